//! Configuration: built-in default < plumb.toml < PLUMB_* environment < flags.
//!
//! plumb.toml is found at `$PLUMB_CONFIG`, else `./plumb.toml`, else
//! `$XDG_CONFIG_HOME/plumb/plumb.toml` (or `~/.config/plumb/plumb.toml`).
//! A missing file is fine; an unknown key or a wrong type is an error that
//! names the file and the key.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything configurable, after all layers are applied.
#[derive(Debug, Clone)]
pub struct Config {
    /// The embedded store's directory.
    pub home: PathBuf,
    /// Raw output bytes kept per run.
    pub output_cap: u64,
    /// Extra secret name fragments.
    pub redact_names: Vec<String>,
    /// Names never redacted by name.
    pub redact_allow: Vec<String>,
    /// Extra tools to version: name -> command.
    pub tools: BTreeMap<String, String>,
    /// Python interpreter to fingerprint.
    pub python: Option<PathBuf>,
    /// Configuration files recorded for every run.
    pub config_files: Vec<PathBuf>,
    /// The collector's base URL (`collector =`, PLUMB_COLLECTOR): where
    /// runs are shipped and queries go; several interchangeable ones,
    /// comma-separated, are tried in turn.
    pub collector: Option<String>,
    /// The bearer token for the collector (`token =`, PLUMB_TOKEN).
    pub token: Option<plumb_model::Secret>,
    /// A PEM file of the CA that signed the collector's certificate, for a
    /// private CA (`ca_cert =`, PLUMB_CA_CERT).
    pub ca_cert: Option<PathBuf>,
    /// Bound of the outbox of runs waiting to be shipped (`spool_max =`,
    /// PLUMB_SPOOL_MAX); when full the oldest runs are dropped and counted.
    pub spool_max: u64,
    /// Error grouping and slow-run detection (`[insights]`), used by
    /// `plumb serve`, `plumb errors` and `plumb slow`.
    pub insights: plumb_model::insights::InsightsConfig,
    /// Alert rules and receivers (`[alerts]`), used by `plumb serve`.
    pub alerts: plumb_collector::alerts::AlertsConfig,
    /// Mounts `plumb agent` always reports, whatever their file system type
    /// (`[agent] mounts = [...]`).
    pub agent_mounts: Vec<PathBuf>,
    /// How often the agent benchmarks its idle node (`[agent] bench_every`,
    /// `"off"`: `Some(None)`); `None` when not set.
    pub agent_bench_every: Option<Option<std::time::Duration>>,
    /// The collector's store when it is not the embedded one (`[store] url
    /// =`, PLUMB_STORE_URL): `postgres://...` (see [`crate::store`]).
    pub store_url: Option<String>,
    /// OTLP export from `plumb serve` (`[export]`, PLUMB_EXPORT_OTLP).
    pub export: Option<Export>,
    /// How long `plumb serve` keeps recorded output, logs, spans and
    /// metric points (`[retention] output =`, PLUMB_RETENTION_OUTPUT);
    /// forever when `None`. Runs are always kept.
    pub retention_output: Option<std::time::Duration>,
}

/// `[export]`: where `plumb serve` forwards what it accepts.
#[derive(Debug, Clone)]
pub struct Export {
    /// The OTLP/HTTP base URL (`otlp =`).
    pub otlp: String,
    /// Headers sent with every request (`headers = { ... }`).
    pub headers: Vec<(String, plumb_model::Secret)>,
    /// The queue's bound in bytes (`queue_max_mib =`, default 1024).
    pub queue_max: u64,
    /// The queue's directory (`queue_dir =`; default `<data>/export`).
    pub queue_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportFileConfig {
    otlp: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, plumb_model::Secret>,
    queue_max_mib: Option<u64>,
    queue_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    home: Option<PathBuf>,
    output_cap: Option<String>,
    python: Option<PathBuf>,
    #[serde(default)]
    tools: BTreeMap<String, String>,
    #[serde(default)]
    redact: RedactConfig,
    collector: Option<OneOrMany>,
    token: Option<plumb_model::Secret>,
    ca_cert: Option<PathBuf>,
    spool_max: Option<String>,
    insights: Option<plumb_model::insights::InsightsConfig>,
    alerts: Option<plumb_collector::alerts::AlertsConfig>,
    #[serde(default)]
    agent: AgentFileConfig,
    export: Option<ExportFileConfig>,
    #[serde(default)]
    store: StoreFileConfig,
    #[serde(default)]
    retention: RetentionFileConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionFileConfig {
    output: Option<String>,
}

/// `collector = "URL"`, or a list of interchangeable collectors tried in
/// turn (`collector = ["https://a:7700", "https://b:7700"]`), kept as the
/// comma-separated form `PLUMB_COLLECTOR` also takes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn joined(self) -> String {
        match self {
            OneOrMany::One(s) => s,
            OneOrMany::Many(v) => v
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFileConfig {
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFileConfig {
    #[serde(default)]
    mounts: Vec<PathBuf>,
    /// `bench_every = "4h"` or `"off"`.
    #[serde(default)]
    bench_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedactConfig {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    allow: Vec<String>,
}

/// The default per-run output cap: 1 GiB.
pub const DEFAULT_OUTPUT_CAP: u64 = 1 << 30;

fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PLUMB_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("plumb.toml");
    if local.is_file() {
        return Some(local);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let p = base.join("plumb/plumb.toml");
    p.is_file().then_some(p)
}

impl Config {
    /// Loads all layers below flags.
    pub fn load() -> Result<Config> {
        let file = match config_path() {
            Some(p) => read_file(&p)?,
            None => FileConfig::default(),
        };
        let mut cfg = Config {
            home: plumb_store::default_dir(),
            output_cap: DEFAULT_OUTPUT_CAP,
            redact_names: file.redact.names,
            redact_allow: file.redact.allow,
            tools: file.tools,
            python: file.python,
            config_files: Vec::new(),
            collector: file
                .collector
                .map(OneOrMany::joined)
                .filter(|c| !c.trim().is_empty()),
            token: file.token.filter(|t| !t.expose().trim().is_empty()),
            ca_cert: file.ca_cert,
            spool_max: plumb_ship::DEFAULT_SPOOL_MAX,
            insights: file.insights.unwrap_or_default(),
            alerts: file.alerts.unwrap_or_default(),
            agent_mounts: file.agent.mounts,
            agent_bench_every: match &file.agent.bench_every {
                None => None,
                Some(v) => Some(
                    parse_bench_every(v)
                        .map_err(|e| anyhow::anyhow!("plumb.toml: [agent] bench_every: {e}"))?,
                ),
            },
            export: None,
            store_url: file.store.url.filter(|u| !u.trim().is_empty()),
            retention_output: None,
        };
        if let Some(v) = &file.retention.output {
            cfg.retention_output = retention(v).context("plumb.toml: [retention] output")?;
        }
        if let Some(v) = env("PLUMB_RETENTION_OUTPUT") {
            cfg.retention_output = retention(&v).context("PLUMB_RETENTION_OUTPUT")?;
        }
        cfg.export = export_config(file.export, env("PLUMB_EXPORT_OTLP"))?;
        if let Some(c) = file.spool_max {
            cfg.spool_max = parse_size(&c).context("plumb.toml: spool_max")?;
        }
        if let Some(v) = env("PLUMB_SPOOL_MAX") {
            cfg.spool_max = parse_size(&v).context("PLUMB_SPOOL_MAX")?;
        }
        if let Some(h) = file.home
            && std::env::var_os("PLUMB_HOME").is_none_or(|v| v.is_empty())
        {
            cfg.home = h;
        }
        if let Some(c) = file.output_cap {
            cfg.output_cap = parse_size(&c).context("plumb.toml: output_cap")?;
        }
        if let Some(v) = env("PLUMB_OUTPUT_CAP") {
            cfg.output_cap = parse_size(&v).context("PLUMB_OUTPUT_CAP")?;
        }
        if let Some(v) = env("PLUMB_COLLECTOR") {
            cfg.collector = Some(v);
        }
        if let Some(v) = env("PLUMB_STORE_URL") {
            cfg.store_url = Some(v);
        }
        if let Some(v) = env("PLUMB_TOKEN") {
            cfg.token = Some(v.into());
        }
        if let Some(v) = env("PLUMB_CA_CERT") {
            cfg.ca_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = env("PLUMB_PYTHON") {
            cfg.python = Some(PathBuf::from(v));
        }
        if let Some(v) = env("PLUMB_CONFIG_FILES") {
            cfg.config_files = std::env::split_paths(&v).collect();
        }
        if let Some(v) = env("PLUMB_REDACT") {
            cfg.redact_names.extend(
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
            );
        }
        Ok(cfg)
    }

    /// The redaction key, created once per store (random, mode 0600). When
    /// the store directory cannot hold it, a key derived from the user id
    /// is used, so markers are still stable on this machine.
    pub fn redaction_key(&self) -> Vec<u8> {
        let path = self.home.join("redact.key");
        if let Ok(k) = std::fs::read(&path)
            && k.len() >= 16
        {
            return k;
        }
        let mut key = vec![0u8; 32];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key));
        if random.is_ok() && write_private(&path, &key).is_ok() {
            return key;
        }
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        format!("plumb-fallback-key-{uid}").into_bytes()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    // The key usually lives in the store directory, which is made here
    // when it is new: private (0700) whatever the umask, as the store makes
    // it.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path.parent().unwrap_or(Path::new(".")))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// A retention period: a duration of a day or more (output is kept in
/// whole UTC days), or `forever`.
fn retention(v: &str) -> Result<Option<std::time::Duration>> {
    let v = v.trim();
    if v == "forever" {
        return Ok(None);
    }
    let d = plumb_model::parse_duration(v).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        d >= std::time::Duration::from_secs(86_400),
        "`{v}` is less than a day: output is kept in whole UTC days, so give 1d or more (or `forever`)"
    );
    Ok(Some(d))
}

/// `[export]` with `PLUMB_EXPORT_OTLP` over its `otlp`; checked here so a
/// bad value is named before anything starts.
fn export_config(
    file: Option<ExportFileConfig>,
    env_url: Option<String>,
) -> Result<Option<Export>> {
    let from_env = env_url.is_some();
    let file = file.unwrap_or_default();
    let Some(otlp) = env_url.or(file.otlp.filter(|u| !u.trim().is_empty())) else {
        anyhow::ensure!(
            file.headers.is_empty() && file.queue_max_mib.is_none() && file.queue_dir.is_none(),
            "plumb.toml: [export] has settings but no `otlp = \"http://host:4318\"` URL to export to"
        );
        return Ok(None);
    };
    let otlp = otlp.trim().to_string();
    let key = if from_env {
        "PLUMB_EXPORT_OTLP"
    } else {
        "plumb.toml: [export] otlp"
    };
    plumb_collector::export::check_url(&otlp).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    for (name, value) in &file.headers {
        plumb_collector::export::check_header_name(name)
            .map_err(|e| anyhow::anyhow!("plumb.toml: [export] headers: {e}"))?;
        anyhow::ensure!(
            value
                .expose()
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b)),
            "plumb.toml: [export] headers: the value of `{name}` holds a control or non-ASCII character"
        );
    }
    let mib = file
        .queue_max_mib
        .unwrap_or(plumb_collector::export::DEFAULT_QUEUE_MAX >> 20);
    anyhow::ensure!(
        (1..=1 << 30).contains(&mib),
        "plumb.toml: [export] queue_max_mib: {mib} is not between 1 and 1073741824"
    );
    Ok(Some(Export {
        otlp,
        headers: file.headers.into_iter().collect(),
        queue_max: mib << 20,
        queue_dir: file.queue_dir,
    }))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    toml::from_str(&text)
        .with_context(|| format!("configuration file {} is invalid", path.display()))
}

/// Parses `512`, `64K`, `10M`, `1G`, `1GiB` into bytes
/// ([`plumb_model::display::parse_size`]).
pub fn parse_size(s: &str) -> Result<u64> {
    plumb_model::display::parse_size(s).map_err(anyhow::Error::msg)
}

/// Parses `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not key=value")),
    }
}

/// `bench_every`: a duration of a minute or more, or `off` (`None`).
pub fn parse_bench_every(s: &str) -> std::result::Result<Option<std::time::Duration>, String> {
    if s.trim() == "off" {
        return Ok(None);
    }
    let ns = plumb_model::parse_duration_ns(s)?;
    if ns < 60_000_000_000 {
        return Err(format!(
            "`{s}` is too short a benchmark interval: use 1m or more (4h is the default; a benchmark keeps the node busy for ~10 s), or `off`"
        ));
    }
    Ok(Some(std::time::Duration::from_nanos(ns as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_config_hides_the_token() {
        let f: FileConfig = toml::from_str("token = \"file-secret-91c2\"\n").unwrap();
        let shown = format!("{f:?}");
        assert!(!shown.contains("file-secret-91c2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(f.token.unwrap().expose(), "file-secret-91c2");
    }

    #[test]
    fn retention_is_a_day_or_more_or_forever() {
        let f: FileConfig = toml::from_str("[retention]\noutput = \"30d\"\n").unwrap();
        assert_eq!(
            retention(f.retention.output.as_deref().unwrap()).unwrap(),
            Some(std::time::Duration::from_secs(30 * 86_400))
        );
        assert_eq!(retention("forever").unwrap(), None);
        let e = retention("6h").unwrap_err().to_string();
        assert!(e.contains("less than a day"), "{e}");
        let e = retention("30 days").unwrap_err().to_string();
        assert!(e.contains("unknown duration unit"), "{e}");
        let e = toml::from_str::<FileConfig>("[retention]\nruns = \"1d\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `runs`"), "{e}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert!(
            parse_size("12Q")
                .unwrap_err()
                .to_string()
                .contains("unknown size unit")
        );
    }

    #[test]
    fn alert_rules_parse_and_bad_ones_are_named() {
        let f: FileConfig = toml::from_str(
            "[alerts]\ninterval = \"200ms\"\n[alerts.rules.disk_low]\nwarning_below = 20\n[[alerts.webhook]]\nurl = \"http://127.0.0.1:9/x\"\n",
        )
        .unwrap();
        let a = f.alerts.unwrap();
        assert_eq!(a.interval.0, std::time::Duration::from_millis(200));
        assert_eq!(a.rules.disk_low.warning_below, 20.0);
        assert_eq!(a.rules.disk_low.critical_below, 5.0);
        assert_eq!(a.webhook.len(), 1);
        let err =
            toml::from_str::<FileConfig>("[alerts.rules.disk_low]\nwarn_below = 3\n").unwrap_err();
        assert!(err.to_string().contains("warn_below"), "{err}");
        let err =
            toml::from_str::<FileConfig>("[alerts.rules.node_down]\nfor = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
    }

    #[test]
    fn export_parses_and_bad_values_are_named() {
        let f: FileConfig = toml::from_str(
            "[export]\notlp = \"http://otel:4318\"\nheaders = { authorization = \"Bearer s3cr3t-77\" }\nqueue_max_mib = 64\n",
        )
        .unwrap();
        assert!(!format!("{f:?}").contains("s3cr3t-77"));
        let e = export_config(f.export, None).unwrap().unwrap();
        assert_eq!(e.otlp, "http://otel:4318");
        assert_eq!(e.queue_max, 64 << 20);
        assert_eq!(e.headers[0].0, "authorization");
        assert_eq!(e.headers[0].1.expose(), "Bearer s3cr3t-77");
        let env = export_config(None, Some("https://vendor:443".into()))
            .unwrap()
            .unwrap();
        assert_eq!(env.otlp, "https://vendor:443");
        assert!(export_config(None, None).unwrap().is_none());

        let err = toml::from_str::<FileConfig>("[export]\notlp_url = \"http://x\"\n").unwrap_err();
        assert!(err.to_string().contains("otlp_url"), "{err}");
        let f: FileConfig = toml::from_str("[export]\notlp = \"otel:4318\"\n").unwrap();
        let err = export_config(f.export, None).unwrap_err().to_string();
        assert!(
            err.contains("[export] otlp") && err.contains("otel:4318"),
            "{err}"
        );
        let err = export_config(None, Some("ftp://x".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PLUMB_EXPORT_OTLP"), "{err}");
        let f: FileConfig =
            toml::from_str("[export]\notlp = \"http://x:1\"\nheaders = { \"bad name\" = \"v\" }\n")
                .unwrap();
        let err = export_config(f.export, None).unwrap_err().to_string();
        assert!(err.contains("headers") && err.contains("bad name"), "{err}");
        let f: FileConfig = toml::from_str(
            "[export]\notlp = \"http://x:1\"\nheaders = { authorization = \"a\\nb\" }\n",
        )
        .unwrap();
        let err = export_config(f.export, None).unwrap_err().to_string();
        assert!(
            err.contains("authorization") && !err.contains("a\nb"),
            "{err}"
        );
        let f: FileConfig =
            toml::from_str("[export]\notlp = \"http://x:1\"\nqueue_max_mib = 0\n").unwrap();
        let err = export_config(f.export, None).unwrap_err().to_string();
        assert!(err.contains("queue_max_mib"), "{err}");
        let f: FileConfig = toml::from_str("[export]\nqueue_max_mib = 5\n").unwrap();
        let err = export_config(f.export, None).unwrap_err().to_string();
        assert!(err.contains("otlp"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<FileConfig>("colour = 1").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
