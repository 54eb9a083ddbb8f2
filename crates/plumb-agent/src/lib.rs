/*!
`plumb agent`, the node daemon: a heartbeat every few seconds with the
node's load, memory, disks, network and plumb runs in progress, its software
fingerprint whenever it changes, the node's outbox shipped to the
collector (runs recorded while the collector was away), the log records
Python processes spooled and never sent ([`PythonLogSpool`]), and the node's
clock offset against the collector's, measured over UDP every 10 s
([`clock`]) and carried by the heartbeats.

Heartbeats are sent directly, not spooled: a heartbeat is worth something
only when it arrives on time, since the collector's failure detector reads
health from arrival times. The fingerprint, which does matter late, is
repeated in every heartbeat until one is acknowledged.

The agent keeps nothing but its outbox on disk, and it is light: one thread
sleeping between heartbeats, one shipping, one for Python's spooled logs, a
few small `/proc` reads each.

```no_run
let cfg = plumb_agent::AgentConfig::new("http://127.0.0.1:7700", "/tmp/outbox".into());
let agent = plumb_agent::Agent::new(cfg).unwrap();
agent.run(&std::sync::atomic::AtomicBool::new(false));
```
*/
#![deny(missing_docs)]

pub mod bench;
pub mod chaos;
pub mod clock;
pub mod health;
pub mod host;
mod pylogs;
pub mod stacks;
pub use pylogs::{Drained, PythonLogSpool};

use plumb_model::Timestamp;
use plumb_model::node::{NODE_REPORT_VERSION, NodeFingerprint, NodeReport};
use plumb_ship::{Client, ClientConfig, Outbox, ShipError, Shipper};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The collector's node-report endpoint.
pub const NODE_PATH: &str = "/api/v1/ingest/node";

/// Everything the agent can fail with at start (afterwards it never fails:
/// it logs and retries).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Shipping setup failed (bad URL, CA file, outbox directory).
    #[error(transparent)]
    Ship(#[from] ShipError),
    /// The node name is empty or has characters that do not belong in one.
    #[error(
        "node name `{0}` is not valid: use 1-253 letters, digits, `.`, `-` or `_` (the default is the host name)"
    )]
    BadName(String),
}

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// How to reach the collector.
    pub client: ClientConfig,
    /// Node name (default: the host name).
    pub name: String,
    /// Labels sent with every heartbeat.
    pub labels: BTreeMap<String, String>,
    /// Time between heartbeats.
    pub interval: Duration,
    /// The node's outbox.
    pub outbox: PathBuf,
    /// Its bound.
    pub spool_max: u64,
    /// Cache directory for the fingerprint capture.
    pub cache_dir: PathBuf,
    /// Python interpreter to fingerprint.
    pub python: Option<PathBuf>,
    /// Extra tools to version.
    pub tools: BTreeMap<String, String>,
    /// How often the fingerprint is taken again to see whether it changed.
    pub fingerprint_every: Duration,
    /// Mount points always reported, whatever their file system type.
    pub mounts: Vec<PathBuf>,
    /// How often the node's clock is measured against the collector's
    /// (on average; jittered); `None`: never.
    pub clock_every: Option<Duration>,
    /// Where clock probes go: a URL or HOST:PORT (default: the
    /// collector's URL, whose port number the collector answers them on).
    pub clock_target: Option<String>,
    /// A simulated clock offset, added to this node's clock readings in
    /// its probes (`plumb demo` on a machine without libfaketime); 0 for
    /// the true clock.
    pub clock_shift_ns: i64,
    /// Read the node's hardware health and send it with heartbeats.
    pub health: bool,
    /// The root the health sources are read under: `/` on a node (another
    /// directory only for tests, laid out as the kernel does).
    pub health_root: PathBuf,
    /// The whole health is sent at least this often; a change in a counter,
    /// a source's availability or SMART is sent at the next heartbeat.
    pub health_every: Duration,
    /// `smartctl`, a path or a name looked up in `PATH`.
    pub smartctl: PathBuf,
    /// How often SMART is read; `None`: never.
    pub smart_every: Option<Duration>,
    /// How often the node is benchmarked when idle ([`bench`]); `None`:
    /// never.
    pub bench_every: Option<Duration>,
    /// The first benchmark is no sooner than this after the start.
    pub bench_delay: Duration,
    /// Where the benchmark measures disk I/O (default: the outbox).
    pub bench_path: Option<PathBuf>,
    /// Idle: the 1-minute load per CPU below this
    /// ([`bench::IDLE_LOAD_PER_CPU`]).
    pub bench_idle_below: f64,
    /// Run the quick variant (tests).
    pub bench_quick: bool,
    /// Start recorded runs again when the collector asks
    /// (`plumb rerun --on-node`); off by default, as it runs programs on
    /// this machine as their recorded users.
    pub allow_reruns: bool,
    /// Carry out chaos faults (kill, evict, pause; cpu and memory
    /// pressure) on this node when the collector hands one over (`plumb
    /// chaos run`, a target or a cpu/memory fault with `node`); off by
    /// default. Needs `home`.
    pub allow_chaos: bool,
    /// The plumb home: the chaos journal is under it, replayed at start
    /// whether or not chaos is allowed now (`None`: no journal).
    pub home: Option<PathBuf>,
    /// Environment variables reported with the fingerprint (`--env-var`),
    /// each with whether its name looks secret (then, as for a value that
    /// looks secret, only "set" is reported).
    pub env_vars: Vec<(String, bool)>,
}

impl AgentConfig {
    /// Defaults: host name, 5 s interval, 1 GiB outbox, fingerprint every
    /// 10 minutes, clock probes every 10 s, health with every heartbeat
    /// that sees a change and at least every minute, SMART every hour,
    /// token and CA from the environment.
    pub fn new(collector: &str, outbox: PathBuf) -> AgentConfig {
        AgentConfig {
            client: ClientConfig::from_env(collector),
            name: plumb_record::host::hostname(),
            labels: BTreeMap::new(),
            interval: Duration::from_secs(5),
            cache_dir: outbox.join(".cache"),
            outbox,
            spool_max: plumb_ship::DEFAULT_SPOOL_MAX,
            python: None,
            tools: BTreeMap::new(),
            fingerprint_every: Duration::from_secs(600),
            mounts: Vec::new(),
            clock_every: Some(clock::PROBE_EVERY),
            clock_target: None,
            clock_shift_ns: 0,
            health: true,
            health_root: PathBuf::from("/"),
            health_every: Duration::from_secs(60),
            smartctl: PathBuf::from("smartctl"),
            smart_every: Some(health::SMART_EVERY),
            bench_every: Some(bench::BENCH_EVERY),
            bench_delay: bench::FIRST_DELAY,
            bench_path: None,
            bench_idle_below: bench::IDLE_LOAD_PER_CPU,
            bench_quick: false,
            allow_reruns: false,
            allow_chaos: false,
            home: None,
            env_vars: Vec::new(),
        }
    }
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    client: Client,
    outbox: Outbox,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl Agent {
    /// Checks the settings and opens the outbox.
    pub fn new(config: AgentConfig) -> Result<Agent, AgentError> {
        if !valid_name(&config.name) {
            return Err(AgentError::BadName(config.name.clone()));
        }
        let client = Client::new(&config.client)?;
        let outbox = Outbox::open(&config.outbox, config.spool_max)?;
        Ok(Agent {
            config,
            client,
            outbox,
        })
    }

    /// One heartbeat's report (without fingerprint).
    pub fn report(&self, seq: u64) -> NodeReport {
        NodeReport {
            version: NODE_REPORT_VERSION,
            node: self.config.name.clone(),
            sent: Timestamp::now(),
            seq,
            interval_ms: self.config.interval.as_millis() as u64,
            labels: self.config.labels.clone(),
            boot_id: host::boot_id(),
            uptime_s: host::uptime(),
            cpu: host::cpu_load(),
            memory: host::memory(),
            disks: host::disks_with(&self.config.mounts),
            network: host::network(),
            runs_in_progress: self.outbox.runs_in_progress(),
            spool: self.outbox.stats(),
            fingerprint: None,
            clock: None,
            health: None,
        }
    }

    /// Sends heartbeats and ships the outbox until `stop` is set.
    pub fn run(&self, stop: &AtomicBool) {
        let pending_fp: Arc<Mutex<Option<NodeFingerprint>>> = Arc::new(Mutex::new(None));
        self.start_fingerprints(pending_fp.clone());
        // Shipping may take long when a backlog waits; it has its own thread
        // so heartbeats stay on time.
        // A refused token is said here, once, for heartbeats and shipping
        // alike (the shipper would say it again); a batch refused as too
        // large is the shipper's to say.
        let shipper = Shipper::new(self.outbox.clone(), self.client.clone(), &self.config.name)
            .quiet_refusals(&[401, 403])
            .spawn(self.config.interval.min(Duration::from_secs(2)));
        // Log records of Python processes that ended before sending them.
        let python_logs = {
            let mut spool = PythonLogSpool::new(self.config.outbox.join("logs"));
            let client = self.client.clone();
            let pause = self.config.interval.min(Duration::from_secs(2));
            let stop_logs = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop_logs);
            let thread = std::thread::Builder::new()
                .name("python-logs".into())
                .spawn(move || {
                    while !flag.load(Ordering::Relaxed) {
                        spool.drain(&client);
                        sleep_until(Instant::now() + pause, &flag);
                    }
                })
                .ok();
            (stop_logs, thread)
        };
        // Clock measurement: its own thread, since a probe must be sent and
        // answered without waiting behind a heartbeat's HTTP request.
        let clock_estimate: Arc<Mutex<Option<plumb_model::clock::Estimate>>> = Arc::default();
        let clock_stop = Arc::new(AtomicBool::new(false));
        let clock_thread = self.config.clock_every.and_then(|every| {
            let target = self
                .config
                .clock_target
                .clone()
                .unwrap_or_else(|| self.config.client.collector.clone());
            clock::spawn_measuring(
                target,
                every,
                self.config.clock_shift_ns,
                clock_estimate.clone(),
                clock_stop.clone(),
            )
            .map_err(|e| tracing::warn!(error = %e, "clock offsets are not measured"))
            .ok()
        });
        // Stack requests: a long poll on its own thread, so a request is
        // answered within a round trip rather than at the next heartbeat,
        // and heartbeats keep their rhythm while a snapshot is taken. Not
        // joined at the end: it may be inside a poll the collector holds
        // open for up to 15 s, and it holds nothing that needs closing.
        // What a chaos fault left behind when this agent (or a `plumb
        // chaos run` of the same home) last died is undone first.
        if let Some(home) = &self.config.home {
            chaos::replay(home);
        }
        let chaos = match (&self.config.home, self.config.allow_chaos) {
            (Some(home), true) => match chaos::Chaos::open(home, self.outbox.clone()) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "chaos faults are refused on this node: its journal cannot be opened");
                    None
                }
            },
            (None, true) => {
                tracing::warn!(
                    "chaos faults are refused on this node: no plumb home for their journal"
                );
                None
            }
            (_, false) => None,
        };
        let stacks_stop = Arc::new(AtomicBool::new(false));
        if let Err(e) = stacks::spawn(
            self.client.clone(),
            self.config.name.clone(),
            self.outbox.clone(),
            self.config.allow_reruns,
            chaos.clone(),
            stacks_stop.clone(),
        ) {
            tracing::warn!(error = %e, "stack requests are not answered on this node");
        }
        // Benchmarks when idle: a thread of their own, sleeping for hours.
        if let Some(every) = self.config.bench_every {
            bench::spawn_idle(
                bench::BenchOptions {
                    node: self.config.name.clone(),
                    path: Some(
                        self.config
                            .bench_path
                            .clone()
                            .unwrap_or_else(|| self.config.outbox.clone()),
                    ),
                    collector: Some(self.client.clone()),
                    quick: self.config.bench_quick,
                },
                self.config.bench_idle_below,
                every,
                self.config.bench_delay,
                stacks_stop.clone(),
            );
        }
        let mut health_reader = self.config.health.then(|| {
            health::HealthReader::new(
                self.config.health_root.clone(),
                self.config.smartctl.clone(),
                self.config.smart_every,
            )
        });
        let mut health_sent: Option<(Instant, plumb_model::health::NodeHealth)> = None;
        // Whether the last reading was under pressure: the first reading
        // after pressure ends goes too, so the collector sees it end.
        let mut health_pressured = false;
        let mut collector_takes_clock = true;
        let mut collector_takes_health = true;
        let mut seq = 0u64;
        let mut next = Instant::now();
        let mut failures = 0u32;
        // The refusal last said: once per cause, again only after a success.
        let mut said: Option<u16> = None;
        while !stop.load(Ordering::Relaxed) {
            let mut report = self.report(seq);
            report.fingerprint = pending_fp.lock().expect("fingerprint lock").clone();
            if collector_takes_clock {
                report.clock = *clock_estimate.lock().expect("clock estimate lock");
            }
            if collector_takes_health && let Some(reader) = health_reader.as_mut() {
                let h = reader.read();
                let stable = h.stable_part();
                let pressured = h.under_pressure(PRESSURE_FLOOR);
                // Under pressure, every reading goes (the collector's
                // sustained-pressure rule counts readings in a row), and
                // the first one after it ended, so the collector sees that.
                let due = pressured
                    || health_pressured
                    || match &health_sent {
                        None => true,
                        Some((at, last)) => {
                            at.elapsed() >= self.config.health_every || *last != stable
                        }
                    };
                health_pressured = pressured;
                if due {
                    report.health = Some(Box::new(h));
                }
            }
            let send = |report: &NodeReport| {
                let body = serde_json::to_vec(report).expect("report serializes");
                self.client
                    .post(NODE_PATH, "application/json", &body, false, &[])
            };
            let mut result = send(&report);
            // A collector older than clock measurement refuses a report
            // with a field it does not know: heartbeats matter more than
            // the clock, so they go on without it.
            if report.clock.is_some() && refuses_clock(&result) {
                tracing::warn!(
                    collector = self.client.base(),
                    "the collector does not take clock estimates (an older plumb serve?); heartbeats go on without them"
                );
                collector_takes_clock = false;
                report.clock = None;
                result = send(&report);
            }
            if report.health.is_some() && refuses_field(&result, "health") {
                tracing::warn!(
                    collector = self.client.base(),
                    "the collector does not take hardware health (an older plumb serve?); heartbeats go on without it"
                );
                collector_takes_health = false;
                report.health = None;
                result = send(&report);
            }
            match result {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!(after = failures, "collector reachable again");
                    }
                    failures = 0;
                    said = None;
                    if let Some(h) = &report.health {
                        health_sent = Some((Instant::now(), h.stable_part()));
                    }
                    // Acknowledged: stop repeating it, unless a newer one
                    // arrived meanwhile.
                    let mut fp = pending_fp.lock().expect("fingerprint lock");
                    if fp.as_ref().map(|f| &f.hash) == report.fingerprint.as_ref().map(|f| &f.hash)
                    {
                        *fp = None;
                    }
                }
                Err(e) => {
                    failures += 1;
                    match e.refusal() {
                        Some(r) if said != Some(r.status) => {
                            tracing::warn!(
                                collector = self.client.base(),
                                "the collector {}; heartbeats are refused and runs wait in the outbox {} until it is accepted",
                                r.why,
                                self.outbox.dir().display()
                            );
                            said = Some(r.status);
                        }
                        Some(_) => {}
                        None if failures == 1 || failures.is_power_of_two() => {
                            tracing::warn!(error = %e, failures, "heartbeat not delivered");
                        }
                        None => {}
                    }
                }
            }
            seq += 1;
            // A fixed schedule rather than "interval after the last send":
            // the collector's failure detector learns the rhythm, and a slow
            // send must not shift every later heartbeat.
            next += self.config.interval;
            let now = Instant::now();
            if next < now {
                next = now;
            }
            sleep_until(next, stop);
        }
        clock_stop.store(true, Ordering::Relaxed);
        stacks_stop.store(true, Ordering::Relaxed);
        // Processes it paused are continued, evictions ended, before it
        // goes.
        if let Some(c) = &chaos {
            c.shutdown();
        }
        if let Some(t) = clock_thread {
            let _ = t.join();
        }
        let _ = shipper.finish(Duration::from_secs(2));
        python_logs.0.store(true, Ordering::Relaxed);
        if let Some(t) = python_logs.1 {
            let _ = t.join();
        }
    }

    fn start_fingerprints(&self, pending: Arc<Mutex<Option<NodeFingerprint>>>) {
        let opts = plumb_record::fingerprint::CaptureOptions {
            cache_dir: self.config.cache_dir.clone(),
            argv: Vec::new(),
            cwd: PathBuf::from("/"),
            env: Vec::new(),
            python: self.config.python.clone(),
            tools: self.config.tools.clone(),
        };
        let every = self.config.fingerprint_every;
        let env_vars = self.config.env_vars.clone();
        // A daemon thread: it sleeps most of the time and ends with the
        // process.
        let _ = std::thread::Builder::new()
            .name("plumb-fingerprint".into())
            .spawn(move || {
                let mut last = String::new();
                loop {
                    // The agent's own process stands in for "a program on
                    // this node": its libraries are the system's.
                    let capture =
                        plumb_record::fingerprint::Capture::start(&opts, std::process::id());
                    let (mut hash, mut fingerprint) = capture.finish();
                    if !env_vars.is_empty() {
                        fingerprint.variables = reported_variables(&env_vars, |n| {
                            std::env::var_os(n).map(|v| v.to_string_lossy().into_owned())
                        });
                        hash = fingerprint.content_hash();
                    }
                    if hash != last {
                        tracing::info!(%hash, "node fingerprint changed");
                        last = hash.clone();
                        *pending.lock().expect("fingerprint lock") =
                            Some(NodeFingerprint { hash, fingerprint });
                    }
                    std::thread::sleep(every);
                }
            });
    }
}

/// The values of the variables `vars` (name, secret-looking name) as
/// `get` reads them: [`plumb_model::VARIABLE_UNSET`] when unset,
/// [`plumb_model::VARIABLE_REDACTED`] when the name or the value looks
/// secret (by plumb's redaction rules), else the value.
pub fn reported_variables(
    vars: &[(String, bool)],
    get: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let rules = plumb_record::redact::Redactor::new(b"");
    vars.iter()
        .map(|(name, secret)| {
            let v = match get(name) {
                None => plumb_model::VARIABLE_UNSET.to_string(),
                Some(v) if *secret || rules.is_secret_value(&v) => {
                    plumb_model::VARIABLE_REDACTED.to_string()
                }
                Some(v) => v,
            };
            (name.clone(), v)
        })
        .collect()
}

/// Whether a heartbeat was refused for its `clock` field: the 400 of a
/// collector whose node report has no such field.
fn refuses_clock<T>(result: &Result<T, ShipError>) -> bool {
    refuses_field(result, "clock")
}

/// Whether a heartbeat was refused for its field `name`: the 400 of a
/// collector whose node report has no such field.
fn refuses_field<T>(result: &Result<T, ShipError>, name: &str) -> bool {
    match result {
        Err(ShipError::Http(e)) => {
            e.status() == Some(400)
                && e.message()
                    .is_some_and(|m| m.contains(&format!("`{name}`")))
        }
        _ => false,
    }
}

/// PSI (some, avg10, percent) at or above which a resource counts as under
/// pressure: while one is, its health goes with every heartbeat, so the
/// collector's sustained-pressure rule sees each interval.
const PRESSURE_FLOOR: f64 = 5.0;

fn sleep_until(t: Instant, stop: &AtomicBool) {
    // Short naps so a stop request is honoured within 100 ms.
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= t {
            return;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_variables_are_values_unset_or_redacted() {
        let vars = [
            ("OMP_NUM_THREADS".to_string(), false),
            ("DB_URL".to_string(), false),
            ("API_TOKEN".to_string(), true),
            ("MISSING".to_string(), false),
        ];
        let got = reported_variables(&vars, |n| match n {
            "OMP_NUM_THREADS" => Some("8".into()),
            "DB_URL" => Some("postgres://u:hunter2@db/x".into()),
            "API_TOKEN" => Some("abc".into()),
            _ => None,
        });
        assert_eq!(got["OMP_NUM_THREADS"], "8");
        assert_eq!(
            got["DB_URL"],
            plumb_model::VARIABLE_REDACTED,
            "a password in a URL"
        );
        assert_eq!(got["API_TOKEN"], plumb_model::VARIABLE_REDACTED);
        assert_eq!(got["MISSING"], plumb_model::VARIABLE_UNSET);
    }
}
