//! Fleet-wide stack snapshots: `plumb stack` through the collector, and the
//! automatic evidence of a run flagged "longer than usual".
//!
//! | Route | Role | What |
//! |---|---|---|
//! | `POST /api/v1/stack` | viewer (admin with `locals`) | asks the live nodes, waits for their answers (bounded), answers a [`FleetStack`] |
//! | `POST /api/v1/profile` | viewer | asks the live nodes to sample a CPU profile for a window (at most [`MAX_PROFILE`]), answers a [`FleetProfile`] |
//! | `POST /api/v1/preflight` | viewer | runs a preflight spec on the live nodes (or those with labels), answers a [`FleetPreflight`] |
//! | `POST /api/v1/rerun` | admin | hands a recorded run to its node's agent to start again, answers a [`RerunStarted`] |
//! | `POST /api/v1/chaos/inject` | admin | hands a chaos fault (kill, evict, pause) to a node's agent, answers a [`ChaosInjected`] |
//! | `GET /api/v1/agent/requests?node=N&wait=15s` | agent | long poll: the requests for node N not yet given to it |
//! | `POST /api/v1/agent/answers` | agent | one node's [`StackAnswer`] |
//!
//! Requests live only in memory ([`StackRequests`], bounded): a request is
//! worth something only while its asker waits, so a restart losing them
//! loses nothing. Agents learn of a request by a long poll on a thread of
//! their own rather than with their next heartbeat: the poll returns the
//! moment a request is registered, so a snapshot starts within a round
//! trip instead of up to a heartbeat interval later, and heartbeats keep
//! their fixed rhythm (the failure detector reads health from it).
//!
//! The nodes waited for are those the store knows and does not consider
//! down, plus any agent that polled in the last [`POLL_FRESH`]; a node that
//! answers "nothing here" is done at once, so the asker waits only as long
//! as the slowest node that has something. Down nodes and nodes that did
//! not answer in time are named in [`FleetStack::not_answered`]. The
//! merged snapshot is attached to every run it covers
//! (`Runs::attach_snapshot`).

use crate::auth::{Agent, Viewer};
use crate::{ApiError, AppState};
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use plumb_model::chaos::{ChaosInjected, ChaosOutcome, ChaosQuery};
use plumb_model::insights::SlowRun;
use plumb_model::node::NodeState;
use plumb_model::preflight::FleetPreflight;
use plumb_model::profile::Profile;
use plumb_model::rerun::{RerunOrder, RerunOutcome, RerunQuery, RerunStarted};
use plumb_model::stack::{
    FleetProfile, FleetStack, Silent, StackAnswer, StackQuery, StackRequest, StackSnapshot,
    StackTarget,
};
use plumb_model::{Timestamp, Uuid};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Requests waiting for answers at once; past it new ones are refused
/// (429) until some finish.
pub const MAX_PENDING: usize = 32;
/// The longest a request may wait for its nodes.
pub const MAX_WAIT: Duration = Duration::from_secs(50);
/// The longest an agent's poll is held open.
pub const MAX_POLL: Duration = Duration::from_secs(25);
/// An agent that polled this recently is waited for even when the store
/// does not know its node yet (its first heartbeat is on its way).
pub const POLL_FRESH: Duration = Duration::from_secs(30);
/// How long the automatic evidence of a slow run waits for its node.
pub const EVIDENCE_WAIT: Duration = Duration::from_secs(10);

/// The pending requests, the agents' last polls, and the automatic
/// evidence's rate limits. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StackRequests {
    inner: Arc<Mutex<Inner>>,
    /// Woken when a request is registered, so polls return at once.
    posted: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Inner {
    pending: BTreeMap<Uuid, Pending>,
    polls: HashMap<String, Instant>,
    evidence: Evidence,
}

#[derive(Debug)]
struct Pending {
    request: StackRequest,
    /// The node asked, when only one was.
    node: Option<String>,
    expected: BTreeSet<String>,
    delivered: BTreeSet<String>,
    answers: BTreeMap<String, StackAnswer>,
    /// Woken on each answer.
    answered: Arc<Notify>,
}

impl Pending {
    fn complete(&self) -> bool {
        self.expected.iter().all(|n| self.answers.contains_key(n))
    }
}

/// Rate limits of the automatic evidence: at most one snapshot per run per
/// `every`, and at most `per_hour` in any hour across the fleet.
#[derive(Debug, Default)]
struct Evidence {
    last: HashMap<Uuid, Instant>,
    recent: VecDeque<Instant>,
}

impl Evidence {
    /// The runs of `slow` to snapshot now, recorded as taken: none seen
    /// within `every`, and no more than `per_hour` in the hour before `now`.
    fn choose(
        &mut self,
        slow: &[SlowRun],
        every: Duration,
        per_hour: usize,
        now: Instant,
    ) -> Vec<SlowRun> {
        let hour = Duration::from_secs(3600);
        let age = |t: &Instant| now.saturating_duration_since(*t);
        while self.recent.front().is_some_and(|t| age(t) >= hour) {
            self.recent.pop_front();
        }
        self.last.retain(|_, t| age(t) < every.max(hour));
        let mut chosen = Vec::new();
        for s in slow {
            if self.recent.len() >= per_hour {
                tracing::debug!("automatic stack snapshots: hourly cap reached");
                break;
            }
            if self.last.get(&s.run_id).is_some_and(|t| age(t) < every) {
                continue;
            }
            self.last.insert(s.run_id, now);
            self.recent.push_back(now);
            chosen.push(s.clone());
        }
        chosen
    }
}

impl StackRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/stack", post(ask_route))
        .route("/api/v1/profile", post(profile_route))
        .route("/api/v1/preflight", post(preflight_route))
        .route("/api/v1/rerun", post(rerun_route))
        .route("/api/v1/chaos/inject", post(chaos_route))
        .route("/api/v1/agent/requests", get(poll))
        .route("/api/v1/agent/answers", post(answer))
}

async fn ask_route(
    _: Viewer,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Json(q): Json<StackQuery>,
) -> Result<Json<FleetStack>, ApiError> {
    // Live locals are the program's memory, unredacted (py-spy reads them
    // as they are): an admin's to ask for, not any reader's.
    if q.locals {
        crate::auth::require(&state, &headers, crate::Role::Admin).await?;
    }
    Ok(Json(ask(&state, q, None, true).await?))
}

/// Asks the live nodes (or `q.node`) for a snapshot of `q.target`, waits
/// up to `q.wait_ms` for their answers, merges them, with `attach`
/// attaches the merge to every run it covers, and says which nodes did
/// not answer.
pub async fn ask(
    state: &AppState,
    q: StackQuery,
    reason: Option<String>,
    attach: bool,
) -> Result<FleetStack, ApiError> {
    let mut q = q;
    q.profile = None;
    let reason = reason.unwrap_or_else(|| format!("plumb stack, {}", q.target.describe()));
    let g = gather(state, q, &reason).await?;
    let mut result = FleetStack {
        snapshot: StackSnapshot::merge(Vec::new(), Some(reason.clone())),
        runs: g.runs,
        answered: Vec::new(),
        nothing_here: Vec::new(),
        not_answered: g.not_answered,
    };
    let mut parts = Vec::new();
    for a in g.answers {
        match a.snapshot {
            Some(s) => {
                result.answered.push(a.node);
                parts.push(s);
            }
            None => result.nothing_here.push(a.node),
        }
    }
    if !parts.is_empty() {
        result.snapshot = StackSnapshot::merge(parts, Some(reason));
    }
    if attach && !result.snapshot.processes.is_empty() {
        for run in result.runs.clone() {
            let snap = result.snapshot.clone();
            if let Err(e) = state.db.write(move |s| s.attach_snapshot(run, &snap)).await {
                tracing::warn!(%run, error = %e, "the stack snapshot could not be attached to the run");
            }
        }
    }
    Ok(result)
}

/// The longest window of a fleet-wide profile: the asker's request stays
/// open for all of it.
pub const MAX_PROFILE: Duration = Duration::from_secs(600);

async fn profile_route(
    _: Viewer,
    State(state): State<AppState>,
    Json(q): Json<StackQuery>,
) -> Result<Json<FleetProfile>, ApiError> {
    Ok(Json(profile(&state, q).await?))
}

/// Asks the live nodes (or `q.node`) to sample a CPU profile of
/// `q.target` for `q.profile`'s window, waits for it and then up to
/// `q.wait_ms` more for their answers, and merges them.
pub async fn profile(state: &AppState, q: StackQuery) -> Result<FleetProfile, ApiError> {
    let Some(spec) = q.profile else {
        return Err(ApiError::BadRequest(
            "no profile: say how long and how often to sample (profile.duration_ms, profile.rate_hz)".into(),
        ));
    };
    if spec.duration_ms < 1000 || spec.duration_ms > MAX_PROFILE.as_millis() as u64 {
        return Err(ApiError::BadRequest(format!(
            "profile.duration_ms {} is outside 1 s to {} s",
            spec.duration_ms,
            MAX_PROFILE.as_secs()
        )));
    }
    if !(1..=1000).contains(&spec.rate_hz) {
        return Err(ApiError::BadRequest(format!(
            "profile.rate_hz {} is outside 1 to 1000",
            spec.rate_hz
        )));
    }
    if q.locals {
        return Err(ApiError::BadRequest(
            "locals are for stack snapshots, not profiles".into(),
        ));
    }
    let reason = format!("plumb profile, {}", q.target.describe());
    let g = gather(state, q, &reason).await?;
    let mut result = FleetProfile {
        profile: Profile {
            taken: Timestamp::now(),
            duration_ms: spec.duration_ms,
            rate_hz: spec.rate_hz,
            processes: Vec::new(),
        },
        runs: g.runs,
        answered: Vec::new(),
        nothing_here: Vec::new(),
        not_answered: g.not_answered,
    };
    let mut parts = Vec::new();
    for a in g.answers {
        match (a.profile, a.snapshot) {
            (Some(p), _) => {
                result.answered.push(a.node);
                parts.push(p);
            }
            // An agent from before fleet-wide profiles takes a snapshot.
            (None, Some(_)) => result.not_answered.push(Silent {
                node: a.node,
                why: "its agent answered with a stack snapshot, not a profile: it is older than fleet-wide profiles (upgrade plumb there)".into(),
            }),
            (None, None) => result.nothing_here.push(a.node),
        }
    }
    if let Some(merged) = Profile::merge(parts) {
        result.profile = merged;
    }
    Ok(result)
}

async fn preflight_route(
    _: Viewer,
    State(state): State<AppState>,
    Json(q): Json<StackQuery>,
) -> Result<Json<FleetPreflight>, ApiError> {
    Ok(Json(preflight(&state, q).await?))
}

/// Asks the live nodes (those with `q.labels`, or `q.node`) to run the
/// preflight spec `q.preflight` and collects their results. The spec is
/// checked by the CLI before it is sent, and by each agent again.
pub async fn preflight(state: &AppState, q: StackQuery) -> Result<FleetPreflight, ApiError> {
    let Some(spec) = &q.preflight else {
        return Err(ApiError::BadRequest(
            "no preflight: give the spec (TOML) to check".into(),
        ));
    };
    if spec.len() > 256 << 10 {
        return Err(ApiError::BadRequest(format!(
            "the preflight spec is {} bytes; at most 256 KiB",
            spec.len()
        )));
    }
    if q.profile.is_some() || q.locals {
        return Err(ApiError::BadRequest(
            "a preflight request takes no profile and no locals".into(),
        ));
    }
    let spec = spec.clone();
    let mut q = q;
    q.target = StackTarget::Node;
    let g = gather(state, q, "plumb preflight").await?;
    let mut result = FleetPreflight {
        id: Some(plumb_model::new_id()),
        nodes: Vec::new(),
        not_answered: g.not_answered,
    };
    for a in g.answers {
        match a.preflight {
            Some(r) => result.nodes.push(r),
            None => result.not_answered.push(Silent {
                node: a.node,
                why: a.note.unwrap_or_else(|| {
                    "its agent cannot run preflight checks: it is older than fleet-wide preflight (upgrade plumb there)".into()
                }),
            }),
        }
    }
    result.nodes.sort_by(|a, b| a.node.cmp(&b.node));
    // Recorded for the dashboard (`/preflight`) when any node was asked;
    // failing to record it does not fail the answer.
    if result.nodes.is_empty() && result.not_answered.is_empty() {
        result.id = None;
        return Ok(result);
    }
    let record = plumb_store::nodes::PreflightRecord {
        id: result.id.expect("set above"),
        at: plumb_model::Timestamp::now(),
        spec,
        result: result.clone(),
    };
    if let Err(e) = state.db.write(move |s| s.put_preflight(&record)).await {
        tracing::warn!(error = %e, "could not record a preflight");
        result.id = None;
    }
    Ok(result)
}

async fn rerun_route(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Json(q): Json<RerunQuery>,
) -> Result<Json<RerunStarted>, ApiError> {
    // It runs a program on a machine, as the run's user (root, for an
    // agent running as root).
    require_tokened_admin(
        &state,
        &headers,
        "reruns need tokens: this collector has none, so anyone who can reach it could run programs on your nodes; create one with `plumb token create --role admin` and give it to `plumb rerun` (PLUMB_TOKEN)",
    )
    .await?;
    Ok(Json(rerun(&state, q).await?))
}

/// For a request that acts on a node's machine: an admin's to ask, and
/// never on a collector without tokens, where "admin" is anyone who can
/// connect (`refusal` says so, and what to do).
async fn require_tokened_admin(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    refusal: &str,
) -> Result<(), ApiError> {
    crate::auth::require(state, headers, crate::Role::Admin).await?;
    if state.auth.open() {
        return Err(ApiError::Forbidden(refusal.into()));
    }
    Ok(())
}

/// Hands run `q.run` to the agent of its node (`q.node`, else the node
/// named like the run's host) to start again there, and waits up to
/// `q.wait_ms` for the agent to say it started it (its answer carries the
/// new run's process id; the run itself reaches the collector as the node
/// ships it, under the id chosen here).
pub async fn rerun(state: &AppState, q: RerunQuery) -> Result<RerunStarted, ApiError> {
    let reference = q.run.clone();
    let run = state
        .db
        .read(move |s| {
            let id = s.resolve(&reference)?;
            s.get_run(id)
        })
        .await?;
    if run.argv.is_empty() {
        return Err(ApiError::Conflict(format!(
            "run {} recorded no command line (it never started: {}), so there is nothing to do again",
            run.id,
            run.launch_error.as_deref().unwrap_or("no command")
        )));
    }
    let node = match q.node.clone() {
        Some(n) => n,
        None if run.host.hostname.is_empty() => {
            return Err(ApiError::Conflict(format!(
                "run {} recorded no host name: say which node should run it (node)",
                run.id
            )));
        }
        None => run.host.hostname.clone(),
    };
    let order = RerunOrder::of(&run, plumb_model::new_id());
    let run_id = order.run_id;
    let sq = StackQuery {
        target: StackTarget::Node,
        node: Some(node.clone()),
        locals: false,
        wait_ms: q.wait_ms,
        profile: None,
        preflight: None,
        labels: Default::default(),
        rerun: Some(order),
        chaos: None,
    };
    let reason = format!("plumb rerun {} --on-node", run.id);
    let g = gather(state, sq, &reason).await.map_err(|e| match e {
        ApiError::NotFound(m) => ApiError::NotFound(format!(
            "run {} ran on host {}: {m}; name the node with --node if its agent is called otherwise",
            run.id, run.host.hostname
        )),
        e => e,
    })?;
    let Some(a) = g.answers.into_iter().find(|a| a.node == node) else {
        let why = g
            .not_answered
            .iter()
            .find(|s| s.node == node)
            .map(|s| s.why.clone())
            .unwrap_or_else(|| "no answer".into());
        return Err(ApiError::Conflict(format!(
            "node {node} did not take the rerun: {why} (is `plumb agent` running there, and can it reach this collector?)"
        )));
    };
    match a.rerun {
        Some(RerunOutcome::Started { pid }) => {
            tracing::info!(original = %run.id, %run_id, %node, pid, "rerun started on its node");
            Ok(RerunStarted {
                original: run.id,
                node,
                run_id,
                pid,
            })
        }
        Some(RerunOutcome::Refused { why }) => Err(ApiError::Conflict(format!(
            "node {node} refused to rerun {}: {why}",
            run.id
        ))),
        None => Err(ApiError::Conflict(format!(
            "node {node} cannot rerun runs: its agent is older than reruns on the node (upgrade plumb there)"
        ))),
    }
}

async fn chaos_route(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Json(q): Json<ChaosQuery>,
) -> Result<Json<ChaosInjected>, ApiError> {
    // It kills and stops processes on a machine.
    require_tokened_admin(
        &state,
        &headers,
        "chaos faults on nodes need tokens: this collector has none, so anyone who can reach it could kill and stop processes on your nodes; create one with `plumb token create --role admin` and give it to `plumb chaos run` (PLUMB_TOKEN)",
    )
    .await?;
    Ok(Json(chaos(&state, q).await?))
}

/// Hands `q.order` to the agent of node `q.node` and waits up to
/// `q.wait_ms` for it to say what it did (the processes it signalled and
/// when) or why it did nothing. The agent removes the fault itself.
pub async fn chaos(state: &AppState, q: ChaosQuery) -> Result<ChaosInjected, ApiError> {
    let node = q.node.clone();
    let what = format!(
        "{}{} on `{}` ({})",
        if q.order.end { "ending " } else { "" },
        q.order.kind.as_str(),
        q.order.target,
        q.order.select.describe()
    );
    let sq = StackQuery {
        target: StackTarget::Node,
        node: Some(node.clone()),
        locals: false,
        wait_ms: q.wait_ms,
        profile: None,
        preflight: None,
        labels: Default::default(),
        rerun: None,
        chaos: Some(q.order),
    };
    let reason = format!("plumb chaos run, {what}");
    let g = gather(state, sq, &reason).await?;
    let Some(a) = g.answers.into_iter().find(|a| a.node == node) else {
        let why = g
            .not_answered
            .iter()
            .find(|s| s.node == node)
            .map(|s| s.why.clone())
            .unwrap_or_else(|| "no answer".into());
        return Err(ApiError::Conflict(format!(
            "node {node} did not take the chaos fault ({what}): {why} (is `plumb agent` running there, and can it reach this collector?)"
        )));
    };
    match a.chaos {
        Some(ChaosOutcome::Injected {
            what: done,
            hit,
            injected,
            removal,
        }) => {
            tracing::info!(%node, fault = %what, pids = ?hit.iter().map(|h| h.pid).collect::<Vec<_>>(), "chaos fault carried out by its node");
            Ok(ChaosInjected {
                node,
                what: done,
                hit,
                injected,
                removal,
            })
        }
        Some(ChaosOutcome::Ended { what: done }) => Ok(ChaosInjected {
            node,
            what: done,
            hit: Vec::new(),
            injected: Timestamp::now(),
            removal: String::new(),
        }),
        Some(ChaosOutcome::Refused { why }) => Err(ApiError::Conflict(format!(
            "node {node} refused the chaos fault ({what}): {why}"
        ))),
        None => Err(ApiError::Conflict(format!(
            "node {node} cannot carry out chaos faults: its agent is older than chaos on nodes (upgrade plumb there)"
        ))),
    }
}

/// What the nodes answered to one request.
struct Gathered {
    /// Every answer received in time (snapshots, profiles, "nothing here").
    answers: Vec<StackAnswer>,
    /// Nodes down, or silent until the deadline.
    not_answered: Vec<Silent>,
    /// The runs the answers cover.
    runs: Vec<Uuid>,
}

/// Posts `q` to the live nodes (or `q.node`) and collects their answers:
/// until every node expected has answered, or the wait is over (for a
/// profile, its window plus `q.wait_ms`).
async fn gather(state: &AppState, q: StackQuery, reason: &str) -> Result<Gathered, ApiError> {
    if q.wait_ms == 0 {
        return Err(ApiError::BadRequest(
            "wait_ms is 0: give the nodes some time to answer (a few seconds)".into(),
        ));
    }
    let mut wait = Duration::from_millis(q.wait_ms);
    if wait > MAX_WAIT {
        return Err(ApiError::BadRequest(format!(
            "wait_ms {} is longer than the longest wait, {} s",
            q.wait_ms,
            MAX_WAIT.as_secs()
        )));
    }
    if let Some(p) = &q.profile {
        wait += Duration::from_millis(p.duration_ms);
    }
    if let StackTarget::Pid { .. } = q.target
        && q.node.is_none()
    {
        return Err(ApiError::BadRequest(
            "a pid means something on one node only: say which (node)".into(),
        ));
    }
    let mut q = q;
    if let StackTarget::Run { run } = &q.target {
        // Agents match full ids: a prefix, `last` or `last~N` is resolved
        // here, where every run is known, and a run that is not running is
        // refused before any node is bothered.
        let reference = run.clone();
        let found = state
            .db
            .read(move |s| {
                let id = s.resolve(&reference)?;
                s.get_run(id)
            })
            .await?;
        if found.state != plumb_model::RunState::Running {
            return Err(ApiError::Conflict(format!(
                "run {} ({}) is {}, not running: there is nothing to look at (plumb show {} has what was recorded)",
                found.id,
                found.name,
                found.state.as_str(),
                found.id
            )));
        }
        q.target = StackTarget::Run {
            run: found.id.to_string(),
        };
    }
    let statuses = state.db.read(crate::nodes::node_statuses).await?;
    let reqs = &state.stacks;
    let mut expected = BTreeSet::new();
    let mut not_answered = Vec::new();
    {
        let inner = reqs.lock();
        let fresh: BTreeSet<&String> = inner
            .polls
            .iter()
            .filter(|(_, t)| t.elapsed() < POLL_FRESH)
            .map(|(n, _)| n)
            .collect();
        let known =
            |n: &str| statuses.iter().any(|s| s.node == n) || fresh.contains(&n.to_string());
        if let Some(n) = &q.node
            && !known(n)
        {
            return Err(ApiError::NotFound(format!(
                "no node `{n}` is known to the collector (plumb nodes lists them)"
            )));
        }
        let labelled = |n: &str| {
            q.labels.is_empty()
                || statuses.iter().any(|s| {
                    s.node == n
                        && q.labels
                            .iter()
                            .all(|(k, v)| s.report.labels.get(k) == Some(v))
                })
        };
        let wanted = |n: &str| q.node.as_deref().is_none_or(|only| only == n) && labelled(n);
        for s in statuses.iter().filter(|s| wanted(&s.node)) {
            if s.state == NodeState::Down && !fresh.contains(&s.node) {
                not_answered.push(Silent {
                    node: s.node.clone(),
                    why: format!(
                        "down since {} (last heartbeat {})",
                        s.since, s.last_heartbeat
                    ),
                });
            } else {
                expected.insert(s.node.clone());
            }
        }
        for n in fresh.into_iter().filter(|n| wanted(n)) {
            expected.insert(n.clone());
        }
    }
    let started = Instant::now();
    let id = plumb_model::new_id();
    let deadline = Timestamp::from_nanos(Timestamp::now().as_nanos() + wait.as_nanos() as i64);
    let answered = Arc::new(Notify::new());
    if !expected.is_empty() {
        register(
            reqs,
            id,
            Pending {
                request: StackRequest {
                    id,
                    target: q.target.clone(),
                    locals: q.locals,
                    deadline,
                    reason: Some(reason.to_string()),
                    profile: q.profile,
                    preflight: q.preflight.clone(),
                    rerun: q.rerun.clone(),
                    chaos: q.chaos.clone(),
                },
                node: q.node.clone(),
                expected: expected.clone(),
                delivered: BTreeSet::new(),
                answers: BTreeMap::new(),
                answered: answered.clone(),
            },
        )?;
        reqs.posted.notify_waiters();
        tracing::debug!(%id, nodes = expected.len(), target = %q.target.describe(), profile = q.profile.is_some(), "stack request posted");
        // Bounded by the deadline; each answer wakes this loop once.
        loop {
            let notified = answered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if is_complete(reqs, &id) {
                break;
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                break;
            }
        }
    }
    let pending = reqs.lock().pending.remove(&id);
    let answers: Vec<StackAnswer> = pending
        .map(|p| p.answers.into_values().collect())
        .unwrap_or_default();
    let mut runs = BTreeSet::new();
    for a in &answers {
        runs.extend(a.runs.iter().copied());
    }
    for n in &expected {
        if !answers.iter().any(|a| &a.node == n) {
            not_answered.push(Silent {
                node: n.clone(),
                why: format!(
                    "no answer within {}",
                    plumb_model::display::duration(wait.as_nanos() as i64)
                ),
            });
        }
    }
    Ok(Gathered {
        answers,
        not_answered,
        runs: runs.into_iter().collect(),
    })
}

/// Adds a pending request, unless [`MAX_PENDING`] wait already.
fn register(reqs: &StackRequests, id: Uuid, pending: Pending) -> Result<(), ApiError> {
    let mut inner = reqs.lock();
    if inner.pending.len() >= MAX_PENDING {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "{MAX_PENDING} stack requests are waiting for their nodes already; retry shortly"
            ),
            retry_after: 1,
        });
    }
    inner.pending.insert(id, pending);
    Ok(())
}

fn is_complete(reqs: &StackRequests, id: &Uuid) -> bool {
    reqs.lock().pending.get(id).is_none_or(Pending::complete)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PollQuery {
    node: String,
    /// How long to hold the poll open when nothing is pending (`15s`).
    wait: Option<String>,
}

/// The long poll: the requests for `node` not yet given to it, as soon as
/// there is one, or an empty list after `wait`.
async fn poll(
    _: Agent,
    State(state): State<AppState>,
    Query(q): Query<PollQuery>,
) -> Result<Json<Vec<StackRequest>>, ApiError> {
    let wait = match &q.wait {
        None => Duration::ZERO,
        Some(w) => Duration::from_nanos(
            plumb_model::parse_duration_ns(w)
                .map_err(|e| ApiError::BadRequest(format!("wait: {e}")))?
                .max(0) as u64,
        ),
    }
    .min(MAX_POLL);
    let reqs = &state.stacks;
    let started = Instant::now();
    // Bounded by `wait`: each registered request wakes it once.
    loop {
        let notified = reqs.posted.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let due = take_due(reqs, &q.node);
        if !due.is_empty() {
            return Ok(Json(due));
        }
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
            // Marked on the way out too, so a node polling without pause
            // stays fresh however long each poll waits.
            reqs.lock().polls.insert(q.node.clone(), Instant::now());
            return Ok(Json(Vec::new()));
        }
    }
}

/// The pending requests for `node` it was not given yet, marked given.
fn take_due(reqs: &StackRequests, node: &str) -> Vec<StackRequest> {
    let mut inner = reqs.lock();
    if inner.polls.len() > 10_000 {
        // Bounded against a flood of made-up node names.
        inner.polls.retain(|_, t| t.elapsed() < POLL_FRESH);
    }
    inner.polls.insert(node.to_string(), Instant::now());
    let mut due = Vec::new();
    for p in inner.pending.values_mut() {
        // Only the nodes the request was meant for (its node, or the live
        // nodes with its labels when it was posted) are given it.
        if p.expected.contains(node) && p.delivered.insert(node.to_string()) {
            due.push(p.request.clone());
        }
    }
    due
}

async fn answer(
    _: Agent,
    State(state): State<AppState>,
    Json(a): Json<StackAnswer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut inner = state.stacks.lock();
    let Some(p) = inner.pending.get_mut(&a.request) else {
        return Err(ApiError::NotFound(format!(
            "no stack request {} is waiting (it ended before this answer came)",
            a.request
        )));
    };
    if p.node.as_deref().is_some_and(|n| n != a.node) {
        return Err(ApiError::BadRequest(format!(
            "stack request {} asked node {}, not {}",
            a.request,
            p.node.as_deref().unwrap_or_default(),
            a.node
        )));
    }
    let notify = p.answered.clone();
    p.answers.insert(a.node.clone(), a);
    drop(inner);
    notify.notify_waiters();
    Ok(Json(serde_json::json!({ "ok": true })))
}

/// The automatic evidence: for each run newly flagged "longer than usual"
/// (with `[insights.slow] evidence` on), asks its node for one snapshot,
/// at most once per run per `evidence_every_s` and `evidence_per_hour`
/// across the fleet. Runs in tasks of their own; never waits.
pub fn take_evidence(state: &AppState, slow: &[SlowRun]) {
    let cfg = &state.insights.slow;
    if !cfg.evidence || slow.is_empty() {
        return;
    }
    let chosen = state.stacks.lock().evidence.choose(
        slow,
        Duration::from_secs(cfg.evidence_every_s),
        cfg.evidence_per_hour as usize,
        Instant::now(),
    );
    for s in chosen {
        let state = state.clone();
        tokio::spawn(async move {
            let reason = format!("longer than usual: {:.1}x the p95 of {}", s.factor, s.name);
            let q = StackQuery {
                target: StackTarget::Run {
                    run: s.run_id.to_string(),
                },
                node: None,
                locals: false,
                wait_ms: EVIDENCE_WAIT.as_millis() as u64,
                profile: None,
                preflight: None,
                labels: Default::default(),
                rerun: None,
                chaos: None,
            };
            match ask(&state, q, Some(reason), true).await {
                Ok(f) if f.runs.contains(&s.run_id) && !f.snapshot.processes.is_empty() => {
                    tracing::info!(run = %s.run_id, name = %s.name, nodes = ?f.answered, "stack snapshot of a slow run attached");
                }
                Ok(f) => tracing::info!(
                    run = %s.run_id,
                    name = %s.name,
                    silent = f.not_answered.len(),
                    "no node had the processes of the slow run; no snapshot attached"
                ),
                Err(e) => {
                    tracing::warn!(run = %s.run_id, error = %e, "automatic stack snapshot failed")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(n: usize) -> Vec<SlowRun> {
        (0..n)
            .map(|i| SlowRun {
                run_id: plumb_model::new_id(),
                name: format!("job{i}"),
                host: "node".into(),
                started: Timestamp::from_nanos(0),
                elapsed_s: 10.0,
                p50_s: 1.0,
                p95_s: 2.0,
                factor: 5.0,
            })
            .collect()
    }

    #[test]
    fn evidence_is_taken_once_per_run_per_period_and_capped_per_hour() {
        let mut ev = Evidence::default();
        let runs = slow(3);
        let every = Duration::from_secs(600);
        let t0 = Instant::now();
        assert_eq!(ev.choose(&runs, every, 10, t0).len(), 3);
        // Still slow a second later: nothing new.
        assert!(
            ev.choose(&runs, every, 10, t0 + Duration::from_secs(1))
                .is_empty()
        );
        // After the period, each once more.
        let later = t0 + every + Duration::from_secs(1);
        assert_eq!(ev.choose(&runs, every, 10, later).len(), 3);
        // The hourly cap across runs: 6 taken in this hour, 2 more allowed.
        let more = slow(5);
        let chosen = ev.choose(&more, every, 8, later + Duration::from_secs(1));
        assert_eq!(chosen.len(), 2);
        assert_eq!(chosen[0].run_id, more[0].run_id);
        // An hour after the first ones, room again.
        let next_hour = t0 + Duration::from_secs(3600) + Duration::from_secs(1);
        assert_eq!(ev.choose(&more[2..], every, 8, next_hour).len(), 3);
    }
}
