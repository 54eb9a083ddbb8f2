//! The scenario file: TOML, or the same keys written as YAML or JSON, read
//! strictly. Every mistake is found before anything runs and named with its
//! line: unknown keys and fault kinds (by serde, `deny_unknown_fields`),
//! then what serde cannot see (a fault naming a target that does not exist,
//! a schedule that cannot run, a field a fault kind does not take) by
//! [`parse`]'s own checks, which carry each table's position ([`At`]).

use anyhow::{Result, anyhow};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A scenario that passed validation, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// What the experiment is about (the file name when not given).
    pub title: String,
    /// How long the method (the faults' schedule) lasts.
    pub duration: Duration,
    /// The seed of every random choice: schedules and which process to hit.
    pub seed: u64,
    /// How often the probes run during the method.
    pub interval: Duration,
    /// How long to wait after the last rollback before the after-check.
    pub settle: Duration,
    /// What the faults act on.
    pub targets: Vec<Target>,
    /// Network namespaces plumb makes (root), in the file's order.
    pub netns: Vec<crate::netns::Spec>,
    /// Network links plumb proxies itself.
    pub links: Vec<Link>,
    /// The steady-state hypothesis.
    pub probes: Vec<Probe>,
    /// The method.
    pub faults: Vec<Fault>,
    /// Commands run at the end, whatever happened.
    pub rollbacks: Vec<Rollback>,
    /// The directory relative paths in the file are read from.
    pub base: PathBuf,
}

/// A compiled process pattern (a regular expression).
pub type Pattern = regex::Regex;

/// What a target is.
#[derive(Debug, Clone)]
pub enum TargetKind {
    /// A command plumb starts (and stops) itself.
    Command(Started),
    /// Every process whose command line matches this pattern.
    Pattern(regex::Regex),
    /// Every process with this exact name (`/proc/PID/comm`).
    Name(String),
    /// The processes of a running plumb run of this name.
    Run(String),
    /// The processes in this cgroup (its `cgroup.procs`).
    Cgroup(PathBuf),
}

/// A command plumb starts.
#[derive(Debug, Clone)]
pub struct Started {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Variables set.
    pub env: BTreeMap<String, String>,
    /// Variables removed.
    pub env_remove: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// A libfaketime offset from the start (e.g. `+1h`).
    pub faketime: Option<String>,
    /// A TCP address that accepts connections once the target is ready.
    pub ready: Option<String>,
    /// Start it again after it exits because of a fault.
    pub restart: bool,
    /// The `[[netns]]` it runs in.
    pub netns: Option<String>,
}

/// A named target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in the scenario.
    pub name: String,
    /// What it is.
    pub kind: TargetKind,
    /// The node whose processes these are, when not this machine's: its
    /// faults are carried out by that node's agent, through the collector
    /// (`node = "NAME"`, with process, pattern or run).
    pub node: Option<String>,
    /// Its line in the file.
    pub line: usize,
}

/// A link: plumb listens on `listen` and forwards to `upstream` through
/// its own proxy, so network faults apply to it.
#[derive(Debug, Clone)]
pub struct Link {
    /// Its name.
    pub name: String,
    /// Where the application connects.
    pub listen: String,
    /// Where the real service listens.
    pub upstream: String,
}

/// What a probe checks.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// An HTTP GET: the status and, optionally, a latency bound.
    Http {
        /// `http://host:port/path`.
        url: String,
        /// The expected status.
        status: u16,
        /// Slower than this is a deviation.
        max_latency: Option<Duration>,
    },
    /// A command whose exit code must be `exit`.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// The expected exit code.
        exit: i32,
    },
    /// A Prometheus text endpoint: the sum of a series' samples within
    /// bounds.
    Metric {
        /// `http://host:port/metrics`.
        url: String,
        /// The metric's name.
        name: String,
        /// Labels a sample must have (others are summed over).
        labels: Vec<(String, String)>,
        /// Below this is a deviation.
        min: Option<f64>,
        /// Above this is a deviation.
        max: Option<f64>,
    },
    /// A pattern in a log: a file, or a started target's output.
    Log {
        /// The pattern.
        pattern: regex::Regex,
        /// Where to look.
        source: LogSource,
        /// True: it must appear; false: it must not.
        present: bool,
    },
}

/// Where a log probe reads.
#[derive(Debug, Clone)]
pub enum LogSource {
    /// A file.
    File(PathBuf),
    /// The output of a target plumb started.
    Target(String),
}

/// One steady-state probe.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Its name.
    pub name: String,
    /// What it checks.
    pub kind: ProbeKind,
    /// How long one check may take.
    pub timeout: Duration,
    /// The `[[netns]]` it checks from.
    pub netns: Option<String>,
}

/// The fault kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL or SIGTERM one process of the target, chosen with the seed.
    Kill,
    /// A warning signal, a grace period, then SIGKILL.
    Evict,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// The started target's clock is offset (libfaketime).
    Clock,
    /// The started target runs with variables removed or changed.
    Env,
    /// The directory is replaced by a full, size-limited tmpfs.
    DiskFull,
    /// The link delays every byte.
    Latency,
    /// The link stops listening and drops its connections.
    Down,
    /// CPU pressure: busy threads, one per `workers`.
    Cpu,
    /// Memory pressure: `size` bytes allocated and touched.
    Memory,
    /// A `[[netns]]` cut off from every other one, both ways.
    Partition,
    /// A share of the packets in and out of a `[[netns]]` dropped.
    Loss,
    /// What a `[[netns]]` sends limited to a rate.
    Bandwidth,
    /// What a `[[netns]]` sends delayed (tc netem).
    Delay,
}

impl FaultKind {
    /// Its name in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Evict => "evict",
            FaultKind::Pause => "pause",
            FaultKind::Clock => "clock",
            FaultKind::Env => "env",
            FaultKind::DiskFull => "disk_full",
            FaultKind::Latency => "latency",
            FaultKind::Down => "down",
            FaultKind::Cpu => "cpu",
            FaultKind::Memory => "memory",
            FaultKind::Partition => "partition",
            FaultKind::Loss => "loss",
            FaultKind::Bandwidth => "bandwidth",
            FaultKind::Delay => "delay",
        }
    }

    /// Whether it acts inside a `[[netns]]`.
    pub fn in_netns(self) -> bool {
        matches!(
            self,
            FaultKind::Partition | FaultKind::Loss | FaultKind::Bandwidth | FaultKind::Delay
        )
    }
}

/// When a fault is injected.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Once, this long after the method starts.
    At(Duration),
    /// Every `every`, each moved by up to ± `jitter` (seeded).
    Every {
        /// The period.
        every: Duration,
        /// The most each injection moves.
        jitter: Duration,
    },
    /// `count` times at seeded random moments of the method.
    Random(u32),
}

/// One fault of the method.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Its kind.
    pub kind: FaultKind,
    /// A target's name (process faults) or a link's (network faults).
    pub on: String,
    /// When.
    pub schedule: Schedule,
    /// How long it lasts before it is removed (an eviction's grace).
    pub duration: Duration,
    /// kill: SIGKILL (9) or SIGTERM (15); evict: the warning signal.
    pub signal: i32,
    /// clock: the libfaketime offset, e.g. `+1h`.
    pub offset: String,
    /// env: variables set.
    pub env_set: BTreeMap<String, String>,
    /// env: variables removed.
    pub env_remove: Vec<String>,
    /// env: run the target as this user instead: (name, uid, gid).
    pub user: Option<(String, u32, u32)>,
    /// disk_full: the directory.
    pub path: PathBuf,
    /// disk_full: the tmpfs size in bytes.
    pub size: u64,
    /// latency: the added delay.
    pub latency: Duration,
    /// pause: every process of the target (true) or one, seeded (false).
    pub all: bool,
    /// kill: a random process of a started target's tree (true), not its
    /// main one.
    pub any: bool,
    /// cpu: how many busy threads.
    pub workers: usize,
    /// cpu and memory: what makes the load.
    pub load: Load,
    /// disk_full: how the directory fills up.
    pub fill: Fill,
    /// loss: the share of packets dropped, in percent.
    pub percent: f64,
    /// bandwidth: the rate, in tc's units (`1mbit`).
    pub rate: String,
    /// partition: the namespaces it is cut off from (empty: every other).
    pub from: Vec<String>,
    /// cpu and memory: the node whose agent makes the load (`node =
    /// "NAME"`), instead of this machine.
    pub node: Option<String>,
    /// cpu and memory: `with` as written (a node's agent chooses by it).
    pub with: Option<String>,
    /// Its line in the file.
    pub line: usize,
}

/// How a disk_full fault fills its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// A full, size-limited tmpfs mounted over it (root): every process
    /// sees it full.
    Tmpfs,
    /// plumb's ENOSPC injector, loaded with LD_PRELOAD into the target
    /// plumb starts (no root): that target's writes under it fail.
    Preload,
}

/// What makes a cpu or memory fault's load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// stress-ng, at this path (the default where it is installed).
    StressNg(PathBuf),
    /// plumb's own threads and allocation.
    Plumb,
}

/// stress-ng on `PATH`.
pub fn stress_ng() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("stress-ng"))
        .find(|p| p.is_file())
}

/// A command run after the method, whatever happened.
#[derive(Debug, Clone)]
pub struct Rollback {
    /// Program and arguments.
    pub argv: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    title: Option<String>,
    duration: At<String>,
    seed: Option<u64>,
    interval: Option<At<String>>,
    settle: Option<At<String>>,
    #[serde(default)]
    target: Vec<At<RawTarget>>,
    #[serde(default)]
    netns: Vec<At<RawNetns>>,
    #[serde(default)]
    link: Vec<At<RawLink>>,
    #[serde(default)]
    probe: Vec<At<RawProbe>>,
    #[serde(default)]
    fault: Vec<At<RawFault>>,
    #[serde(default)]
    rollback: Vec<At<RawRollback>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    env_remove: Vec<String>,
    cwd: Option<String>,
    faketime: Option<String>,
    ready: Option<String>,
    #[serde(default)]
    restart: bool,
    pattern: Option<String>,
    process: Option<String>,
    run: Option<String>,
    cgroup: Option<String>,
    netns: Option<String>,
    node: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetns {
    name: String,
    address: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    name: String,
    #[serde(default = "default_listen")]
    listen: String,
    upstream: String,
}

fn default_listen() -> String {
    "127.0.0.1:0".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: String,
    http: Option<String>,
    status: Option<u16>,
    max_latency: Option<String>,
    command: Option<Vec<String>>,
    exit: Option<i32>,
    log: Option<String>,
    file: Option<String>,
    target: Option<String>,
    #[serde(default)]
    absent: bool,
    timeout: Option<String>,
    metric: Option<String>,
    series: Option<String>,
    min: Option<f64>,
    max: Option<f64>,
    netns: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: At<FaultKind>,
    target: Option<String>,
    link: Option<String>,
    at: Option<String>,
    every: Option<String>,
    jitter: Option<String>,
    random: Option<u32>,
    duration: Option<String>,
    signal: Option<String>,
    grace: Option<String>,
    offset: Option<String>,
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
    user: Option<String>,
    path: Option<String>,
    size: Option<String>,
    latency: Option<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    any: bool,
    workers: Option<usize>,
    with: Option<String>,
    netns: Option<String>,
    percent: Option<f64>,
    rate: Option<String>,
    #[serde(default)]
    from: Vec<String>,
    node: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollback {
    command: Vec<String>,
}

/// How a scenario is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The documented form.
    Toml,
    /// The same keys as YAML: tables are mappings, `[[fault]]` a list.
    Yaml,
    /// The same keys as JSON.
    Json,
}

impl Format {
    /// The format a file's extension names (TOML unless `.yaml`, `.yml` or
    /// `.json`).
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// Where a value was written: TOML's parser gives byte offsets, the YAML
/// loader (which also reads the JSON form) lines.
#[derive(Debug, Clone, Copy)]
enum Pos {
    Byte(usize),
    Line(usize),
}

/// A value and where it was written, from whichever of the three forms is
/// being read (the thread's [`FROM_YAML`] says which deserializer is
/// asking). Every check after serde's quotes its line.
#[derive(Debug, Clone)]
struct At<T> {
    value: T,
    pos: Pos,
}

impl<T> At<T> {
    fn get_ref(&self) -> &T {
        &self.value
    }
    fn line(&self, text: &str) -> usize {
        match self.pos {
            Pos::Byte(b) => line_of(text, b),
            Pos::Line(l) => l,
        }
    }
}

thread_local! {
    /// Set while the YAML loader's deserializer runs on this thread.
    static FROM_YAML: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl<'de, T: Deserialize<'de> + Clone> Deserialize<'de> for At<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if FROM_YAML.get() {
            let s = marked_yaml::Spanned::<T>::deserialize(d)?;
            let line = s.span().start().map(|m| m.line()).unwrap_or(1);
            Ok(At {
                value: (*s).clone(),
                pos: Pos::Line(line),
            })
        } else {
            let s = toml::Spanned::<T>::deserialize(d)?;
            let pos = Pos::Byte(s.span().start);
            Ok(At {
                value: s.into_inner(),
                pos,
            })
        }
    }
}

/// Reads `text` as YAML (or JSON, which the YAML loader reads too) into
/// the raw scenario, errors led by their line.
fn from_yaml(text: &str, format: Format) -> Result<RawScenario> {
    if format == Format::Json {
        // JSON's own parser first, for JSON's own words on a syntax error.
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| {
            let msg = e.to_string();
            let tail = format!(" at line {} column {}", e.line(), e.column());
            let msg = msg.strip_suffix(&tail).unwrap_or(&msg);
            anyhow!("{}: {msg} (column {})", e.line(), e.column())
        })?;
    }
    let opts = marked_yaml::LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .toplevel_mapping();
    let node = marked_yaml::parse_yaml_with_options(0, text, opts).map_err(|e| match e {
        marked_yaml::LoadError::DuplicateKey(d) => {
            let line =
                |n: &marked_yaml::types::MarkedScalarNode| n.span().start().map_or(1, |m| m.line());
            anyhow!(
                "{}: `{}` is given twice (first on line {})",
                line(&d.key),
                d.key.as_str(),
                line(&d.prev_key)
            )
        }
        marked_yaml::LoadError::ScanError(m, s) => anyhow!("{}: {}", m.line(), s.info()),
        other => {
            // The others lead with `LINE:COLUMN: `; keep the line.
            let msg = other.to_string();
            match msg.split_once(':') {
                Some((line, rest)) if line.parse::<usize>().is_ok() => {
                    let rest = rest.split_once(": ").map_or(rest, |(_, r)| r);
                    anyhow!("{line}: {rest}")
                }
                _ => anyhow!("1: {msg}"),
            }
        }
    })?;
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            FROM_YAML.set(false);
        }
    }
    FROM_YAML.set(true);
    let _reset = Reset;
    marked_yaml::from_node::<RawScenario>(&node).map_err(|e| {
        let line = key_line(&node, e.path()).or_else(|| e.start_mark().map(|m| m.line()));
        let what = e.path().map(|p| format!("{p}: ")).unwrap_or_default();
        anyhow!("{}: {what}{}", line.unwrap_or(1), e.into_inner())
    })
}

/// The line of the key `path` (`fault[0].bogus`) names, found by walking
/// the loaded document: the deserializer's own position for an unknown key
/// is its table's, not the key's.
fn key_line(node: &marked_yaml::Node, path: Option<&str>) -> Option<usize> {
    let mut node = node;
    let mut line = None;
    for part in path?.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            let map = node.as_mapping()?;
            let (k, v) = map.iter().find(|(k, _)| k.as_str() == key)?;
            line = k.span().start().map(|m| m.line());
            node = v;
        }
        for ix in indexes.split('[').filter(|s| !s.is_empty()) {
            let i: usize = ix.trim_end_matches(']').parse().ok()?;
            node = node.as_sequence()?.get(i)?;
            line = node.span().start().map(|m| m.line());
        }
    }
    line
}

/// The line (1-based) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read scenario {}: {e}", path.display()))?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let title = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_as(&text, Format::of(path), &base, &title).map_err(|e| anyhow!("{}:{e}", path.display()))
}

/// Validates a scenario's TOML text. Errors start with `LINE: `.
pub fn parse(text: &str, base: &Path, default_title: &str) -> Result<Scenario> {
    parse_as(text, Format::Toml, base, default_title)
}

/// Validates a scenario's text written in `format`. Errors start with
/// `LINE: `.
pub fn parse_as(text: &str, format: Format, base: &Path, default_title: &str) -> Result<Scenario> {
    let raw: RawScenario = match format {
        Format::Toml => toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            anyhow!("{line}: {}", e.message().trim_end())
        })?,
        Format::Yaml | Format::Json => from_yaml(text, format)?,
    };
    let dur = |s: &At<String>, what: &str| -> Result<Duration> {
        parse_dur(s.get_ref()).map_err(|e| anyhow!("{}: {what}: {e}", s.line(text)))
    };
    let duration = dur(&raw.duration, "duration")?;
    if duration.is_zero() {
        return Err(anyhow!(
            "{}: duration must be more than 0",
            raw.duration.line(text)
        ));
    }
    let interval = match &raw.interval {
        Some(s) => dur(s, "interval")?,
        None => Duration::from_millis(500),
    };
    if interval < Duration::from_millis(10) {
        let line = raw.interval.as_ref().map(|s| s.line(text)).unwrap_or(1);
        return Err(anyhow!("{line}: interval must be at least 10ms"));
    }
    let settle = match &raw.settle {
        Some(s) => dur(s, "settle")?,
        None => Duration::from_secs(1),
    };

    let mut netns: Vec<crate::netns::Spec> = Vec::new();
    for n in &raw.netns {
        let line = n.line(text);
        let r = n.get_ref();
        let err = |m: String| anyhow!("{line}: netns `{}`: {m}", r.name);
        if r.name.is_empty()
            || r.name.len() > 20
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err("a name is 1 to 20 letters, digits, `-` and `_`".into()));
        }
        if netns.iter().any(|x| x.name == r.name) {
            return Err(err("a second netns with this name".into()));
        }
        let (address, prefix) = match &r.address {
            Some(a) => {
                let (ip, len) = a.split_once('/').unwrap_or((a, "24"));
                let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| {
                    err(format!(
                        "address {a:?}: an IPv4 address, e.g. \"10.213.0.1/24\""
                    ))
                })?;
                let len: u8 = len
                    .parse()
                    .ok()
                    .filter(|l| (8..=30).contains(l))
                    .ok_or_else(|| err(format!("address {a:?}: a prefix length from 8 to 30")))?;
                (ip, len)
            }
            None => (
                std::net::Ipv4Addr::new(10, 213, 0, u8::try_from(netns.len() + 1).unwrap_or(250)),
                24,
            ),
        };
        if let Some(other) = netns.iter().find(|x| x.address == address) {
            return Err(err(format!("address {address} is `{}`'s too", other.name)));
        }
        netns.push(crate::netns::Spec {
            name: r.name.clone(),
            address,
            prefix,
            line,
        });
    }
    if netns.len() > 200 {
        return Err(anyhow!("1: at most 200 [[netns]]"));
    }
    let known_netns = |name: &Option<String>| -> Result<Option<String>, String> {
        match name {
            None => Ok(None),
            Some(n) if netns.iter().any(|x| &x.name == n) => Ok(Some(n.clone())),
            Some(n) => Err(format!(
                "netns `{n}` is not a [[netns]] of this scenario (netns: {})",
                names(netns.iter().map(|x| x.name.as_str()))
            )),
        }
    };

    let mut targets = Vec::new();
    for t in &raw.target {
        let line = t.line(text);
        let r = t.get_ref();
        let err = |m: String| anyhow!("{line}: target `{}`: {m}", r.name);
        if targets.iter().any(|x: &Target| x.name == r.name) {
            return Err(err("a second target with this name".into()));
        }
        let given = [
            r.command.is_some(),
            r.pattern.is_some(),
            r.process.is_some(),
            r.run.is_some(),
            r.cgroup.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(err(
                "say what it is with exactly one of command, pattern, process, run or cgroup"
                    .into(),
            ));
        }
        let started_only = !r.env.is_empty()
            || r.netns.is_some()
            || !r.env_remove.is_empty()
            || r.cwd.is_some()
            || r.faketime.is_some()
            || r.ready.is_some()
            || r.restart;
        if r.command.is_none() && started_only {
            return Err(err(
                "env, env_remove, cwd, faketime, ready, restart and netns are for a command plumb starts"
                    .into(),
            ));
        }
        if let Some(node) = &r.node {
            if r.command.is_some() || r.cgroup.is_some() {
                return Err(err(format!(
                    "node = {node:?} goes with process, pattern or run: a command plumb starts, or a cgroup, is on this machine"
                )));
            }
            if !node_name_ok(node) {
                return Err(err(format!(
                    "node = {node:?} is not a node name: 1-253 letters, digits, `.`, `-` or `_`, as its agent is called (plumb nodes lists them)"
                )));
            }
        }
        let kind = if let Some(argv) = &r.command {
            if argv.is_empty() {
                return Err(err("command is empty".into()));
            }
            TargetKind::Command(Started {
                argv: argv.clone(),
                env: r.env.clone(),
                env_remove: r.env_remove.clone(),
                cwd: r.cwd.as_ref().map(|c| base.join(c)),
                faketime: r.faketime.clone(),
                ready: r.ready.clone(),
                restart: r.restart,
                netns: known_netns(&r.netns).map_err(err)?,
            })
        } else if let Some(p) = &r.pattern {
            TargetKind::Pattern(
                regex::Regex::new(p).map_err(|e| err(format!("pattern is not a regex: {e}")))?,
            )
        } else if let Some(p) = &r.process {
            TargetKind::Name(p.clone())
        } else if let Some(c) = &r.cgroup {
            let dir = Path::new("/sys/fs/cgroup").join(c);
            if !dir.join("cgroup.procs").is_file() {
                return Err(err(format!(
                    "{} has no cgroup.procs: not a cgroup directory",
                    dir.display()
                )));
            }
            TargetKind::Cgroup(dir)
        } else {
            TargetKind::Run(r.run.clone().unwrap_or_default())
        };
        targets.push(Target {
            name: r.name.clone(),
            kind,
            node: r.node.clone(),
            line,
        });
    }

    let mut links: Vec<Link> = Vec::new();
    for l in &raw.link {
        let r = l.get_ref();
        if links.iter().any(|x| x.name == r.name) {
            return Err(anyhow!(
                "{}: link `{}`: a second link with this name",
                l.line(text),
                r.name
            ));
        }
        links.push(Link {
            name: r.name.clone(),
            listen: r.listen.clone(),
            upstream: r.upstream.clone(),
        });
    }

    let mut probes = Vec::new();
    for p in &raw.probe {
        let line = p.line(text);
        let r = p.get_ref();
        let err = |m: String| anyhow!("{line}: probe `{}`: {m}", r.name);
        let given = [
            r.http.is_some(),
            r.command.is_some(),
            r.log.is_some(),
            r.metric.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(err(
                "say what it checks with exactly one of http, command, log or metric".into(),
            ));
        }
        if r.metric.is_none() && (r.series.is_some() || r.min.is_some() || r.max.is_some()) {
            return Err(err("series, min and max go with metric".into()));
        }
        let timeout = match &r.timeout {
            Some(s) => parse_dur(s).map_err(|e| err(format!("timeout: {e}")))?,
            None => Duration::from_secs(2),
        };
        let kind = if let Some(url) = &r.metric {
            if r.status.is_some()
                || r.max_latency.is_some()
                || r.exit.is_some()
                || r.file.is_some()
                || r.target.is_some()
                || r.absent
            {
                return Err(err(
                    "a metric probe takes series, min, max and timeout".into()
                ));
            }
            crate::probe::check_url(url).map_err(|e| err(format!("metric = {e}")))?;
            let series = r
                .series
                .as_deref()
                .ok_or_else(|| err("name the series: series = 'name{label=\"value\"}'".into()))?;
            let (name, labels) =
                parse_series(series).map_err(|e| err(format!("series {series:?}: {e}")))?;
            if r.min.is_none() && r.max.is_none() {
                return Err(err("give its bounds: min and/or max".into()));
            }
            ProbeKind::Metric {
                url: url.clone(),
                name,
                labels,
                min: r.min,
                max: r.max,
            }
        } else if let Some(url) = &r.http {
            if r.exit.is_some() || r.file.is_some() || r.target.is_some() || r.absent {
                return Err(err(
                    "an http probe takes status, max_latency and timeout".into()
                ));
            }
            crate::probe::check_url(url).map_err(|e| err(format!("http = {e}")))?;
            let max_latency = match &r.max_latency {
                Some(s) => Some(parse_dur(s).map_err(|e| err(format!("max_latency: {e}")))?),
                None => None,
            };
            ProbeKind::Http {
                url: url.clone(),
                status: r.status.unwrap_or(200),
                max_latency,
            }
        } else if let Some(argv) = &r.command {
            if argv.is_empty() {
                return Err(err("command is empty".into()));
            }
            if r.status.is_some()
                || r.max_latency.is_some()
                || r.file.is_some()
                || r.target.is_some()
                || r.absent
            {
                return Err(err("a command probe takes exit and timeout".into()));
            }
            ProbeKind::Command {
                argv: argv.clone(),
                exit: r.exit.unwrap_or(0),
            }
        } else {
            let pat = r.log.as_deref().unwrap_or_default();
            let pattern =
                regex::Regex::new(pat).map_err(|e| err(format!("log is not a regex: {e}")))?;
            let source = match (&r.file, &r.target) {
                (Some(f), None) => LogSource::File(base.join(f)),
                (None, Some(t)) => {
                    let known = targets.iter().find(|x| &x.name == t).ok_or_else(|| {
                        err(format!("target `{t}` is not a target of this scenario"))
                    })?;
                    if !matches!(known.kind, TargetKind::Command(_)) {
                        return Err(err(format!(
                            "target `{t}` is not started by plumb, so plumb has no output of it: read a file instead"
                        )));
                    }
                    LogSource::Target(t.clone())
                }
                _ => return Err(err("a log probe reads exactly one of file or target".into())),
            };
            ProbeKind::Log {
                pattern,
                source,
                present: !r.absent,
            }
        };
        let netns = known_netns(&r.netns).map_err(err)?;
        if netns.is_some() && matches!(kind, ProbeKind::Log { .. }) {
            return Err(err("a log probe reads a file: netns does not apply".into()));
        }
        probes.push(Probe {
            name: r.name.clone(),
            kind,
            timeout,
            netns,
        });
    }

    let mut faults = Vec::new();
    for f in &raw.fault {
        let made = fault(f, text, base, &targets, &links, &netns, duration)?;
        // A started target carries one injector directory, fixed when it
        // starts.
        if made.fill == Fill::Preload
            && let Some(other) = faults.iter().find(|o: &&Fault| {
                o.kind == FaultKind::DiskFull
                    && o.fill == Fill::Preload
                    && o.on == made.on
                    && o.path != made.path
            })
        {
            return Err(anyhow!(
                "{}: fault disk_full: `{}` already has its writes failed under {} (line {}); one directory per target",
                made.line,
                made.on,
                other.path.display(),
                other.line
            ));
        }
        faults.push(made);
    }
    if faults.is_empty() {
        return Err(anyhow!(
            "1: the scenario has no [[fault]]: nothing would be tested"
        ));
    }
    let mut rollbacks = Vec::new();
    for r in &raw.rollback {
        if r.get_ref().command.is_empty() {
            return Err(anyhow!("{}: rollback: command is empty", r.line(text)));
        }
        rollbacks.push(Rollback {
            argv: r.get_ref().command.clone(),
        });
    }
    Ok(Scenario {
        title: raw.title.unwrap_or_else(|| default_title.to_string()),
        duration,
        seed: raw.seed.unwrap_or(0),
        interval,
        settle,
        targets,
        netns,
        links,
        probes,
        faults,
        rollbacks,
        base: base.to_path_buf(),
    })
}

fn fault(
    f: &At<RawFault>,
    text: &str,
    base: &Path,
    targets: &[Target],
    links: &[Link],
    netns: &[crate::netns::Spec],
    method: Duration,
) -> Result<Fault> {
    let line = f.line(text);
    let r = f.get_ref();
    let kind = *r.kind.get_ref();
    let name = kind.as_str();
    let err = |m: String| anyhow!("{line}: fault {name}: {m}");
    let network = matches!(kind, FaultKind::Latency | FaultKind::Down);
    // Which fields each kind takes, beyond the schedule.
    let allowed: &[&str] = match kind {
        FaultKind::Kill => &["target", "signal", "duration"],
        FaultKind::Evict => &["target", "signal", "grace"],
        FaultKind::Pause => &["target", "duration", "all"],
        FaultKind::Clock => &["target", "offset", "duration"],
        FaultKind::Env => &["target", "set", "remove", "user", "duration"],
        FaultKind::DiskFull => &["path", "size", "duration", "target", "with"],
        FaultKind::Latency => &["link", "latency", "duration"],
        FaultKind::Down => &["link", "duration"],
        FaultKind::Cpu => &["workers", "duration", "with", "node"],
        FaultKind::Memory => &["size", "duration", "with", "node"],
        FaultKind::Partition => &["netns", "from", "duration"],
        FaultKind::Loss => &["netns", "percent", "duration"],
        FaultKind::Bandwidth => &["netns", "rate", "duration"],
        FaultKind::Delay => &["netns", "latency", "duration"],
    };
    let present: [(&str, bool); 19] = [
        ("node", r.node.is_some()),
        ("from", !r.from.is_empty()),
        ("netns", r.netns.is_some()),
        ("percent", r.percent.is_some()),
        ("rate", r.rate.is_some()),
        ("with", r.with.is_some()),
        ("user", r.user.is_some()),
        ("workers", r.workers.is_some()),
        ("target", r.target.is_some()),
        ("link", r.link.is_some()),
        ("signal", r.signal.is_some()),
        ("grace", r.grace.is_some()),
        ("duration", r.duration.is_some()),
        ("offset", r.offset.is_some()),
        ("set", !r.set.is_empty()),
        ("remove", !r.remove.is_empty()),
        ("path", r.path.is_some()),
        ("size", r.size.is_some()),
        ("latency", r.latency.is_some()),
    ];
    for (key, is) in present {
        if is && !allowed.contains(&key) {
            return Err(err(format!(
                "`{key}` does not apply to this kind (it takes {})",
                allowed.join(", ")
            )));
        }
    }
    if r.any && kind != FaultKind::Kill {
        return Err(err("`any` applies to kill only".into()));
    }
    if r.all && kind != FaultKind::Pause {
        return Err(err("`all` applies to pause only".into()));
    }
    let on = if network {
        let l = r
            .link
            .clone()
            .ok_or_else(|| err("name the link it acts on: link = \"NAME\"".into()))?;
        if !links.iter().any(|x| x.name == l) {
            return Err(err(format!(
                "link `{l}` is not a [[link]] of this scenario (links: {})",
                names(links.iter().map(|x| x.name.as_str()))
            )));
        }
        l
    } else if kind.in_netns() {
        let n = r
            .netns
            .clone()
            .ok_or_else(|| err("name the namespace it acts on: netns = \"NAME\"".into()))?;
        if !netns.iter().any(|x| x.name == n) {
            return Err(err(format!(
                "netns `{n}` is not a [[netns]] of this scenario (netns: {})",
                names(netns.iter().map(|x| x.name.as_str()))
            )));
        }
        if kind == FaultKind::Partition && netns.len() < 2 {
            return Err(err(format!(
                "`{n}` is the only [[netns]]: a partition needs another to cut it off from"
            )));
        }
        for other in &r.from {
            if other == &n {
                return Err(err(format!("from: `{n}` cannot be cut off from itself")));
            }
            if !netns.iter().any(|x| &x.name == other) {
                return Err(err(format!(
                    "from: netns `{other}` is not a [[netns]] of this scenario (netns: {})",
                    names(netns.iter().map(|x| x.name.as_str()))
                )));
            }
        }
        n
    } else if kind == FaultKind::DiskFull && r.target.is_none() {
        r.path.clone().unwrap_or_default()
    } else if matches!(kind, FaultKind::Cpu | FaultKind::Memory) {
        match &r.node {
            Some(node) if !node_name_ok(node) => {
                return Err(err(format!(
                    "node = {node:?} is not a node name: 1-253 letters, digits, `.`, `-` or `_`, as its agent is called (plumb nodes lists them)"
                )));
            }
            Some(node) => format!("node {node}"),
            None => "this host".to_string(),
        }
    } else {
        let t = r
            .target
            .clone()
            .ok_or_else(|| err("name the target it acts on: target = \"NAME\"".into()))?;
        let target = targets.iter().find(|x| x.name == t).ok_or_else(|| {
            err(format!(
                "target `{t}` is not a [[target]] of this scenario (targets: {})",
                names(targets.iter().map(|x| x.name.as_str()))
            ))
        })?;
        if let Some(node) = &target.node
            && !REMOTE_KINDS.contains(&kind)
        {
            return Err(err(format!(
                "target `{t}` is on node {node}, and a node's agent carries out only {} there",
                names(REMOTE_KINDS.iter().map(|k| k.as_str()))
            )));
        }
        if matches!(kind, FaultKind::Clock | FaultKind::Env)
            && !matches!(target.kind, TargetKind::Command(_))
        {
            return Err(err(format!(
                "target `{t}` must be a command plumb starts (command = [...]): only a process plumb starts can be given another clock or environment"
            )));
        }
        t
    };
    let d = |s: &Option<String>, what: &str| -> Result<Option<Duration>> {
        s.as_ref()
            .map(|v| parse_dur(v).map_err(|e| err(format!("{what}: {e}"))))
            .transpose()
    };
    let schedule = match (&r.at, &r.every, r.random) {
        (Some(_), None, None) => {
            if r.jitter.is_some() {
                return Err(err("jitter goes with every".into()));
            }
            let t = d(&r.at, "at")?.unwrap_or_default();
            if t >= method {
                return Err(err(format!(
                    "at = {:?} is not within the scenario's duration ({})",
                    r.at.as_deref().unwrap_or_default(),
                    human(method)
                )));
            }
            Schedule::At(t)
        }
        (None, Some(_), None) => {
            let every = d(&r.every, "every")?.unwrap_or_default();
            let jitter = d(&r.jitter, "jitter")?.unwrap_or_default();
            if every.is_zero() {
                return Err(err("every must be more than 0".into()));
            }
            if jitter >= every {
                return Err(err("jitter must be less than every".into()));
            }
            if every + jitter >= method {
                return Err(err(format!(
                    "every = {:?} never comes within the scenario's duration ({})",
                    r.every.as_deref().unwrap_or_default(),
                    human(method)
                )));
            }
            Schedule::Every { every, jitter }
        }
        (None, None, Some(n)) => {
            if r.jitter.is_some() {
                return Err(err("jitter goes with every".into()));
            }
            if n == 0 {
                return Err(err("random must be at least 1".into()));
            }
            Schedule::Random(n)
        }
        (None, None, None) => {
            return Err(err(
                "say when with one of at = \"2s\", every = \"5s\" (with jitter), or random = N"
                    .into(),
            ));
        }
        _ => {
            return Err(err(
                "at, every and random exclude each other: use one".into()
            ));
        }
    };
    let duration = match kind {
        FaultKind::Kill => d(&r.duration, "duration")?.unwrap_or_default(),
        FaultKind::Evict => d(&r.grace, "grace")?.unwrap_or(Duration::from_secs(2)),
        _ => d(&r.duration, "duration")?.unwrap_or(Duration::from_secs(2)),
    };
    if let Schedule::Every { every, jitter } = schedule
        && duration + jitter * 2 >= every
    {
        return Err(err(format!(
            "each injection lasts {} but they come every {} ± {}: they would overlap",
            human(duration),
            human(every),
            human(jitter)
        )));
    }
    let signal = match (&r.signal, kind) {
        (None, FaultKind::Kill) => libc::SIGKILL,
        (None, _) => libc::SIGTERM,
        (Some(s), _) => signal_number(s).ok_or_else(|| {
            err(format!(
                "signal {s:?} is not one plumb sends (SIGKILL, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT)"
            ))
        })?,
    };
    if kind == FaultKind::Kill && signal != libc::SIGKILL && signal != libc::SIGTERM {
        return Err(err("kill sends SIGKILL or SIGTERM".into()));
    }
    let offset = r.offset.clone().unwrap_or_default();
    if kind == FaultKind::Clock {
        let ok = offset.len() > 1
            && (offset.starts_with('+') || offset.starts_with('-'))
            && offset[1..]
                .trim_end_matches(['s', 'm', 'h', 'd', 'y'])
                .parse::<f64>()
                .is_ok();
        if !ok {
            return Err(err(format!(
                "offset = {offset:?}: give libfaketime's relative form, e.g. \"+1h\", \"-30m\", \"+90s\""
            )));
        }
    }
    if kind == FaultKind::Env && r.set.is_empty() && r.remove.is_empty() && r.user.is_none() {
        return Err(err(
            "say what changes: set = { VAR = \"value\" }, remove = [\"VAR\"] and/or user = \"NAME\""
                .into(),
        ));
    }
    let user = match &r.user {
        Some(name) => Some(
            user_ids(name)
                .map(|(uid, gid)| (name.clone(), uid, gid))
                .ok_or_else(|| err(format!("user {name:?} does not exist on this machine")))?,
        ),
        None => None,
    };
    let path = match (&r.path, kind) {
        (Some(p), _) => base.join(p),
        (None, FaultKind::DiskFull) => {
            return Err(err(
                "name the directory that fills up: path = \"DIR\"".into()
            ));
        }
        (None, _) => PathBuf::new(),
    };
    let size = match (&r.size, kind) {
        (Some(s), _) => {
            parse_size(s).ok_or_else(|| err(format!("size {s:?}: e.g. \"64k\", \"1M\"")))?
        }
        (None, FaultKind::Memory) => {
            return Err(err("say how much: size = \"256M\"".into()));
        }
        (None, _) => 64 * 1024,
    };
    let workers = match r.workers {
        Some(0) => return Err(err("workers must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let load = match r.with.as_deref() {
        _ if !matches!(kind, FaultKind::Cpu | FaultKind::Memory) => Load::Plumb,
        // The node's agent finds its own stress-ng.
        Some("plumb" | "stress-ng") | None if r.node.is_some() => Load::Plumb,
        Some("plumb") => Load::Plumb,
        Some("stress-ng") => Load::StressNg(stress_ng().ok_or_else(|| {
            err("with = \"stress-ng\", but stress-ng is not on PATH (Debian: apt install stress-ng); with = \"plumb\" uses plumb's own load".into())
        })?),
        Some(other) => {
            return Err(err(format!(
                "with = {other:?}: \"stress-ng\" or \"plumb\""
            )));
        }
        None => stress_ng().map_or(Load::Plumb, Load::StressNg),
    };
    let started = |name: &str| {
        targets
            .iter()
            .any(|t| t.name == name && matches!(t.kind, TargetKind::Command(_)))
    };
    let fill = match (kind, r.with.as_deref()) {
        (FaultKind::DiskFull, Some("tmpfs")) => Fill::Tmpfs,
        (FaultKind::DiskFull, Some("preload")) => Fill::Preload,
        (FaultKind::DiskFull, Some(other)) => {
            return Err(err(format!(
                "with = {other:?}: \"tmpfs\" (root) or \"preload\" (a target plumb starts)"
            )));
        }
        // Root mounts a tmpfs; anyone else can still fail the writes of a
        // target plumb starts.
        // SAFETY: geteuid has no preconditions.
        (FaultKind::DiskFull, None)
            if unsafe { libc::geteuid() } != 0 && r.target.as_deref().is_some_and(started) =>
        {
            Fill::Preload
        }
        _ => Fill::Tmpfs,
    };
    if fill == Fill::Preload && !r.target.as_deref().is_some_and(started) {
        return Err(err(
            "with = \"preload\" fails the writes of a target plumb starts: name it, target = \"NAME\" (a target with command)".into(),
        ));
    }
    let percent = match (r.percent, kind) {
        (Some(p), _) if p > 0.0 && p <= 100.0 => p,
        (Some(p), _) => return Err(err(format!("percent = {p}: more than 0, at most 100"))),
        (None, FaultKind::Loss) => return Err(err("say how much: percent = 30".into())),
        (None, _) => 0.0,
    };
    let rate = match (&r.rate, kind) {
        (Some(rate), _) => {
            let digits = rate.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let unit = &rate[digits.len()..];
            if digits.parse::<f64>().map_or(true, |v| v <= 0.0)
                || !["bit", "kbit", "mbit", "gbit"].contains(&unit)
            {
                return Err(err(format!(
                    "rate = {rate:?}: a number and bit, kbit, mbit or gbit, e.g. \"1mbit\""
                )));
            }
            rate.clone()
        }
        (None, FaultKind::Bandwidth) => return Err(err("say how much: rate = \"1mbit\"".into())),
        (None, _) => String::new(),
    };
    let latency = match (d(&r.latency, "latency")?, kind) {
        (Some(l), _) => l,
        (None, FaultKind::Latency | FaultKind::Delay) => {
            return Err(err("say how much: latency = \"200ms\"".into()));
        }
        (None, _) => Duration::ZERO,
    };
    Ok(Fault {
        kind,
        on,
        schedule,
        duration,
        signal,
        offset,
        env_set: r.set.clone(),
        env_remove: r.remove.clone(),
        user,
        path,
        size,
        latency,
        all: r.all,
        any: r.any,
        workers,
        load,
        fill,
        percent,
        rate,
        from: r.from.clone(),
        node: r.node.clone(),
        with: r.with.clone(),
        line,
    })
}

/// The fault kinds a node's agent carries out on a target with `node`.
pub const REMOTE_KINDS: &[FaultKind] = &[FaultKind::Kill, FaultKind::Evict, FaultKind::Pause];

/// A node name as agents are named: 1-253 letters, digits, `.`, `-`, `_`.
pub fn node_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A user's uid and primary gid, from the password database.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam with a NUL-terminated name; the record it points at
    // is read at once, before any other call could reuse it.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

/// `name` or `name{a="x",b="y"}`.
pub fn parse_series(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    let s = s.trim();
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let ok_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !ok_name {
        return Err("a metric name is letters, digits, _ and :".into());
    }
    let mut labels = Vec::new();
    if let Some(rest) = rest {
        let body = rest.strip_suffix('}').ok_or("a { without its }")?;
        for part in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or("labels are key=\"value\"")?;
            let v = v
                .trim()
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or("label values are quoted")?;
            labels.push((k.trim().to_string(), v.to_string()));
        }
    }
    Ok((name.to_string(), labels))
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A duration with its unit (`500ms`, `2s`, `1m`).
pub fn parse_dur(s: &str) -> Result<Duration, String> {
    plumb_model::parse_duration(s)
}

/// A duration for people.
pub fn human(d: Duration) -> String {
    plumb_model::display::duration(d.as_nanos() as i64)
}

/// `64k`, `1M`, `4096` as bytes.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1024),
        (i, 'm' | 'M') => (&s[..i], 1024 * 1024),
        (i, 'g' | 'G') => (&s[..i], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .map(|n| n * mult)
        .filter(|n| *n >= 4096)
}

/// A signal's number from its name (with or without `SIG`).
pub fn signal_number(name: &str) -> Option<i32> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("SIG").unwrap_or(&n);
    Some(match n {
        "KILL" => libc::SIGKILL,
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "QUIT" => libc::SIGQUIT,
        _ => return None,
    })
}

/// A signal's name.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGCONT => "SIGCONT",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Scenario> {
        parse(text, Path::new("."), "t")
    }

    const OK: &str = r#"duration = "5s"
[[target]]
name = "w"
command = ["sleep", "100"]

[[fault]]
kind = "kill"
target = "w"
at = "1s"
"#;

    #[test]
    fn a_good_scenario_parses() {
        let s = p(OK).unwrap();
        assert_eq!(s.faults[0].kind, FaultKind::Kill);
        assert_eq!(s.faults[0].signal, libc::SIGKILL);
        assert_eq!(s.faults[0].line, 6);
    }

    const OK_YAML: &str = "duration: 5s
seed: 9
target:
  - name: w
    command: [sleep, \"100\"]
    env: {MODE: prod}
fault:
  - kind: kill
    target: w
    at: 1s
  - kind: pause
    target: w
    every: 2s
    jitter: 500ms
    duration: 300ms
    all: true
";

    const OK_JSON: &str = r#"{
	"duration": "5s",
	"seed": 9,
	"target": [
		{"name": "w", "command": ["sleep", "100"], "env": {"MODE": "prod"}}
	],
	"fault": [
		{"kind": "kill", "target": "w", "at": "1s"},
		{"kind": "pause", "target": "w", "every": "2s", "jitter": "500ms",
		 "duration": "300ms", "all": true}
	]
}
"#;

    fn as_(text: &str, f: Format) -> Result<Scenario> {
        parse_as(text, f, Path::new("."), "t")
    }

    /// What a scenario means, without where it was written.
    fn meaning(s: &Scenario) -> String {
        let faults: Vec<_> = s
            .faults
            .iter()
            .map(|f| format!("{:?} {} {:?} {}", f.kind, f.on, f.schedule, f.all))
            .collect();
        let targets: Vec<_> = s
            .targets
            .iter()
            .map(|t| format!("{} {:?}", t.name, t.kind))
            .collect();
        format!(
            "{} {} {targets:?} {faults:?}",
            s.seed,
            s.duration.as_millis()
        )
    }

    #[test]
    fn yaml_and_json_scenarios_mean_what_the_toml_one_does() {
        let toml = p(r#"duration = "5s"
seed = 9
[[target]]
name = "w"
command = ["sleep", "100"]
env = { MODE = "prod" }
[[fault]]
kind = "kill"
target = "w"
at = "1s"
[[fault]]
kind = "pause"
target = "w"
every = "2s"
jitter = "500ms"
duration = "300ms"
all = true
"#)
        .unwrap();
        let yaml = as_(OK_YAML, Format::Yaml).unwrap();
        let json = as_(OK_JSON, Format::Json).unwrap();
        assert_eq!(meaning(&yaml), meaning(&toml));
        assert_eq!(meaning(&json), meaning(&toml));
        // Each fault's line is where it is written in its own file.
        assert_eq!(
            yaml.faults.iter().map(|f| f.line).collect::<Vec<_>>(),
            [8, 11]
        );
        assert_eq!(
            json.faults.iter().map(|f| f.line).collect::<Vec<_>>(),
            [8, 9]
        );
    }

    #[test]
    fn yaml_and_json_mistakes_name_their_line() {
        let e = as_(
            &OK_YAML.replace("    at: 1s\n", "    at: 1s\n    colour: red\n"),
            Format::Yaml,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("11: fault[0].colour: Unknown field `colour`"),
            "{e}"
        );
        let e = as_(
            &OK_YAML.replace("kind: pause", "kind: meteor"),
            Format::Yaml,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("11: fault[1].kind: unknown variant `meteor`"),
            "{e}"
        );
        let e = as_(&OK_JSON.replace("\"seed\": 9", "\"sead\": 9"), Format::Json)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("3: sead: Unknown field `sead`"), "{e}");
        // A syntax error, in JSON's words.
        let e = as_(&OK_JSON.replace("\"1s\"}", "\"1s\""), Format::Json)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("9: key must be a string (column 3)"), "{e}");
        // The same key twice is an error, as in TOML.
        let e = as_(&format!("{OK_YAML}seed: 10\n"), Format::Yaml)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("17: `seed` is given twice (first on line 2)"),
            "{e}"
        );
        // A check after serde's: a fault on a target that does not exist.
        let e = as_(
            &OK_YAML.replace("target: w\n    at", "target: x\n    at"),
            Format::Yaml,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("8: fault kill: "), "{e}");
        let e = as_("- just\n- a list\n", Format::Yaml)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("1: "), "{e}");
    }

    #[test]
    fn unknown_keys_and_kinds_name_their_line() {
        let e = p(&OK.replace("at = \"1s\"", "at = \"1s\"\ncolour = 1")).unwrap_err();
        assert!(
            e.to_string().starts_with("10: unknown field `colour`"),
            "{e}"
        );
        let e = p(&OK.replace("\"kill\"", "\"meteor\"")).unwrap_err();
        assert!(
            e.to_string().starts_with("7: unknown variant `meteor`"),
            "{e}"
        );
    }

    #[test]
    fn missing_targets_and_bad_schedules_are_refused() {
        let e = p(&OK.replace("target = \"w\"", "target = \"x\"")).unwrap_err();
        assert!(
            e.to_string()
                .contains("6: fault kill: target `x` is not a [[target]]"),
            "{e}"
        );
        let e = p(&OK.replace("at = \"1s\"", "at = \"9s\"")).unwrap_err();
        assert!(
            e.to_string().contains("not within the scenario's duration"),
            "{e}"
        );
        let e = p(&OK.replace("at = \"1s\"", "every = \"1s\"\njitter = \"2s\"")).unwrap_err();
        assert!(
            e.to_string().contains("jitter must be less than every"),
            "{e}"
        );
        let e = p(&OK.replace("at = \"1s\"", "at = \"soon\"")).unwrap_err();
        assert!(e.to_string().starts_with("6: fault kill: at:"), "{e}");
    }

    const REMOTE: &str = r#"duration = "5s"
[[target]]
name = "w"
pattern = "worker"
node = "node-a"

[[fault]]
kind = "pause"
target = "w"
at = "1s"
"#;

    #[test]
    fn cpu_and_memory_pressure_may_name_a_node_and_other_kinds_may_not() {
        let s = p("duration = \"5s\"\n[[fault]]\nkind = \"cpu\"\nnode = \"gpu-3\"\nwith = \"stress-ng\"\nworkers = 2\nat = \"1s\"\n").unwrap();
        assert_eq!(s.faults[0].node.as_deref(), Some("gpu-3"));
        assert_eq!(s.faults[0].on, "node gpu-3");
        // The node's agent finds its own stress-ng: none is needed here.
        assert_eq!(s.faults[0].with.as_deref(), Some("stress-ng"));
        assert_eq!(s.faults[0].load, Load::Plumb);
        let e = p("duration = \"5s\"\n[[fault]]\nkind = \"memory\"\nnode = \"gpu 3\"\nsize = \"1M\"\nat = \"1s\"\n").unwrap_err();
        assert!(e.to_string().contains("is not a node name"), "{e}");
        let e = p(&OK.replace("at = \"1s\"", "at = \"1s\"\nnode = \"gpu-3\"")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("6: fault kill: `node` does not apply to this kind"),
            "{e}"
        );
    }

    #[test]
    fn a_target_on_a_node_takes_process_pattern_or_run_and_only_kill_evict_pause() {
        let s = p(REMOTE).unwrap();
        assert_eq!(s.targets[0].node.as_deref(), Some("node-a"));
        assert!(matches!(s.targets[0].kind, TargetKind::Pattern(_)));
        for kind in ["kill", "evict"] {
            let s = p(&REMOTE.replace("\"pause\"", &format!("{kind:?}"))).unwrap();
            assert_eq!(s.faults[0].kind.as_str(), kind);
        }
        let s = p(&REMOTE.replace("pattern = \"worker\"", "run = \"etl\"")).unwrap();
        assert!(matches!(s.targets[0].kind, TargetKind::Run(_)));
        let e =
            p(&REMOTE.replace("pattern = \"worker\"", "command = [\"sleep\", \"9\"]")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("2: target `w`: node = \"node-a\" goes with process, pattern or run"),
            "{e}"
        );
        let e = p(&REMOTE.replace("pattern = \"worker\"", "cgroup = \".\"")).unwrap_err();
        assert!(e.to_string().starts_with("2: target `w`: node ="), "{e}");
        let e = p(&REMOTE.replace("node-a", "node a")).unwrap_err();
        assert!(e.to_string().contains("is not a node name"), "{e}");
        // The same key in YAML, and its mistakes with their line.
        let yaml = "duration: 5s\ntarget:\n  - name: w\n    process: postgres\n    node: node-a\nfault:\n  - kind: evict\n    target: w\n    at: 1s\n";
        let s = as_(yaml, Format::Yaml).unwrap();
        assert_eq!(s.targets[0].node.as_deref(), Some("node-a"));
        let e = as_(&yaml.replace("kind: evict", "kind: clock"), Format::Yaml).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("7: fault clock: target `w` is on node node-a"),
            "{e}"
        );
        // Any other kind on it: refused naming the kind and the node.
        let e = p(&REMOTE.replace(
            "kind = \"pause\"",
            "kind = \"disk_full\"\npath = \"/tmp/x\"",
        ))
        .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "7: fault disk_full: target `w` is on node node-a, and a node's agent carries out only kill, evict, pause there"
            ),
            "{e}"
        );
    }
}
