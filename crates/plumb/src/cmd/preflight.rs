//! `plumb preflight SPEC.toml`: what a job needs of this host, checked
//! before it is launched (see `plumb_record::preflight` for the spec).
//! With `[user] run_as = true` the checks run as the job's user: plumb
//! (as root) starts itself again as that user and reads its results.

use crate::config::Config;
use crate::out::{outln, stdout};
use anyhow::{Context as _, Result, anyhow, bail};
use plumb_model::preflight::HostResults;
use plumb_model::text::Cell;
use plumb_record::preflight::{self, Outcome, Spec};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

/// Arguments of `plumb preflight`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec (TOML; `-` reads it from stdin).
    pub spec: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Where relative paths of the spec start (default: the spec's
    /// directory).
    #[arg(long, value_name = "DIR")]
    pub spec_dir: Option<PathBuf>,
    /// Run the checks as this process is, without switching user (how
    /// plumb runs itself as the job's user).
    #[arg(long, hide = true)]
    pub as_is: bool,
    /// Check on the collector's nodes through their agents instead of
    /// here: `all`, `label=KEY=VALUE[,KEY=VALUE]`, or one node's name.
    #[arg(long, value_name = "WHICH")]
    pub nodes: Option<String>,
    /// The collector to ask (default: `collector` in plumb.toml or
    /// PLUMB_COLLECTOR).
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// How long to wait for the nodes' results.
    #[arg(long, default_value = "30s", value_parser = plumb_model::parse_duration)]
    pub wait: std::time::Duration,
}

pub fn main(a: Args) -> Result<ExitCode> {
    let (name, text) = if a.spec.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the spec from stdin")?;
        ("<stdin>".to_string(), s)
    } else {
        let s = std::fs::read_to_string(&a.spec)
            .with_context(|| format!("cannot read the spec {}", a.spec.display()))?;
        (a.spec.display().to_string(), s)
    };
    let spec = preflight::parse(&name, &text)?;
    let spec_dir = match &a.spec_dir {
        Some(d) => d.clone(),
        None if a.spec.as_os_str() == "-" => std::env::current_dir()?,
        None => a
            .spec
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    let spec_dir = std::fs::canonicalize(&spec_dir).unwrap_or(spec_dir);
    let cfg = Config::load()?;
    if let Some(which) = &a.nodes {
        return fleet(&cfg, &a, which, &spec, text);
    }
    let (user, checks) = checks(&cfg, &spec, &text, &spec_dir, a.as_is)?;
    let results = HostResults {
        node: plumb_record::host::hostname(),
        user,
        checks,
    };
    let failed = results.checks.iter().filter(|c| !c.ok).count();
    if a.json {
        let mut o = stdout();
        serde_json::to_writer_pretty(&mut o, &results)?;
        writeln!(o)?;
    } else {
        print(&results);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::DIFFERENT)
    })
}

fn print(r: &HostResults) {
    let width = r
        .checks
        .iter()
        .map(|c| c.check.len())
        .max()
        .unwrap_or(5)
        .min(48);
    outln!("preflight on {} as {}", Cell(&r.node), Cell(&r.user));
    for c in &r.checks {
        outln!(
            "  {:<width$}  {:<4}  {}",
            Cell(&c.check),
            if c.ok { "ok" } else { "FAIL" },
            Cell(&c.detail)
        );
    }
    let failed = r.checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        outln!("all {} checks passed", r.checks.len());
    } else {
        outln!("{failed} of {} checks failed", r.checks.len());
    }
}

/// Runs the checks here, switching to the spec's user first when it says
/// `run_as` and this is not that user.
fn checks(
    cfg: &Config,
    spec: &Spec,
    text: &str,
    spec_dir: &Path,
    as_is: bool,
) -> Result<(String, Vec<Outcome>)> {
    let me = plumb_record::host::user_info();
    if let Some(u) = &spec.user
        && u.run_as
        && !as_is
        && me.name != u.name
    {
        let mut out = Vec::new();
        // Whether the user exists is checked here; everything else as it.
        let user_check = preflight::run(
            &Spec {
                user: spec.user.clone(),
                ..Default::default()
            },
            &context(cfg, spec_dir, &|| Ok((0, 0))),
        );
        out.extend(user_check);
        let Some((uid, gid)) = preflight::lookup_user(&u.name) else {
            return Ok((me.name, out));
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            out.push(Outcome {
                check: format!("run as {}", u.name),
                ok: false,
                detail: format!(
                    "plumb runs as {}, not root, so it cannot switch to {}: run it as root or as {}",
                    me.name, u.name, u.name
                ),
            });
            return Ok((me.name, out));
        }
        // The user was checked above.
        out.extend(
            as_user(&u.name, uid, gid, text, spec_dir)?
                .into_iter()
                .filter(|c| c.check != format!("user {}", u.name)),
        );
        return Ok((u.name.clone(), out));
    }
    Ok((
        me.name,
        preflight::run(spec, &context(cfg, spec_dir, &|| clock(cfg))),
    ))
}

fn context<'a>(
    _cfg: &'a Config,
    spec_dir: &Path,
    clock: &'a dyn Fn() -> Result<(i64, i64), String>,
) -> preflight::Context<'a> {
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    preflight::Context {
        spec_dir: spec_dir.to_path_buf(),
        env,
        components: &components,
        clock,
    }
}

fn components() -> BTreeMap<String, String> {
    match Config::load() {
        Ok(cfg) => {
            let (_, fp) = crate::cmd::env::capture_here(&cfg, None, &[]);
            crate::cmd::env::checkable(&fp)
        }
        Err(_) => BTreeMap::new(),
    }
}

/// This host's clock against the configured collector, measured now.
fn clock(cfg: &Config) -> Result<(i64, i64), String> {
    let url = cfg.collector.as_deref().ok_or(
        "no collector to measure the clock against: set PLUMB_COLLECTOR or `collector =` in plumb.toml",
    )?;
    let (_, estimate, _) =
        crate::cmd::clock::measure_now(url, 8, std::time::Duration::from_secs(1))
            .map_err(|e| format!("{e:#}"))?;
    Ok((estimate.offset_ns, estimate.error_ns))
}

/// Runs `plumb preflight - --json --as-is` as `user` and reads its
/// results.
fn as_user(user: &str, uid: u32, gid: u32, text: &str, spec_dir: &Path) -> Result<Vec<Outcome>> {
    let exe = std::env::current_exe().context("finding plumb's own executable")?;
    let cname = std::ffi::CString::new(user)?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["preflight", "-", "--json", "--as-is", "--spec-dir"])
        .arg(spec_dir)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec:
    // initgroups, setgid, setuid.
    unsafe {
        cmd.pre_exec(move || {
            if libc::initgroups(cname.as_ptr(), gid) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting plumb as {user}"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("no stdin"))?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let parsed: Result<HostResults, _> = serde_json::from_slice(&out.stdout);
    match parsed {
        Ok(r) => Ok(r.checks),
        Err(_) => bail!(
            "plumb as {user} did not finish its checks ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// `--nodes`: the spec checked by every chosen node's agent, through the
/// collector; a node-by-check table, and the failures with their reasons.
fn fleet(cfg: &Config, a: &Args, which: &str, spec: &Spec, text: String) -> Result<ExitCode> {
    if spec.lock.is_some() {
        bail!(
            "a [lock] check names a file on this host; for --nodes, check locks with `plumb env check --lock FILE --node NAME`"
        );
    }
    let url = a.collector.clone().or_else(|| cfg.collector.clone()).ok_or_else(|| {
        anyhow!("--nodes asks the nodes' agents through a collector: give --collector URL (or set `collector` in plumb.toml)")
    })?;
    let (node, labels) = if which == "all" {
        (None, BTreeMap::new())
    } else if let Some(l) = which.strip_prefix("label=") {
        let labels = plumb_collector::env::parse_labels(l).map_err(|e| anyhow!("--nodes: {e}"))?;
        if labels.is_empty() {
            bail!("--nodes label=: give KEY=VALUE");
        }
        (None, labels)
    } else {
        (Some(which.to_string()), BTreeMap::new())
    };
    let query = plumb_model::stack::StackQuery {
        target: plumb_model::stack::StackTarget::Node,
        node,
        locals: false,
        wait_ms: a.wait.as_millis() as u64,
        profile: None,
        preflight: Some(text),
        labels,
        rerun: None,
        chaos: None,
    };
    let client = plumb_http::Client::new(&plumb_http::Config {
        timeout: a.wait + std::time::Duration::from_secs(30),
        retry: plumb_http::Retry::NEVER,
        ..crate::target::client_config(cfg, &url)
    })?;
    let resp = client.post("/api/v1/preflight").json(&query).send()?;
    let fleet: plumb_model::preflight::FleetPreflight = serde_json::from_slice(&resp.body)
        .map_err(|e| resp.decode_error(format!("{e} (is it a plumb collector?)")))?;
    let failed = fleet.nodes.iter().map(HostResults::failed).sum::<usize>();
    if a.json {
        let mut o = stdout();
        serde_json::to_writer_pretty(&mut o, &fleet)?;
        writeln!(o)?;
    } else {
        print_fleet(&fleet);
        if let Some(id) = fleet.id {
            outln!("recorded: {}/preflight/{id}", url.trim_end_matches('/'));
        }
    }
    if fleet.nodes.is_empty() && fleet.not_answered.is_empty() {
        return Err(crate::exit::NotFound(format!(
            "no node matches `{which}` (plumb nodes lists them, with their labels)"
        ))
        .into());
    }
    Ok(if failed == 0 && fleet.not_answered.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::DIFFERENT)
    })
}

fn print_fleet(f: &plumb_model::preflight::FleetPreflight) {
    // Checks in the order the first node gave them, then any others.
    let mut checks: Vec<&str> = Vec::new();
    for n in &f.nodes {
        for c in &n.checks {
            if !checks.contains(&c.check.as_str()) {
                checks.push(&c.check);
            }
        }
    }
    let width = checks.iter().map(|c| c.len()).max().unwrap_or(5).min(40);
    let mut head = format!("  {:<width$}", "CHECK");
    for n in &f.nodes {
        head.push_str(&format!(
            "  {:<10}",
            plumb_model::text::escape_cell(&n.node)
        ));
    }
    outln!("{head}");
    for c in &checks {
        let mut line = format!("  {:<width$}", plumb_model::text::escape_cell(c));
        for n in &f.nodes {
            let cell = match n.checks.iter().find(|x| x.check == *c) {
                Some(x) if x.ok => "ok",
                Some(_) => "FAIL",
                None => "-",
            };
            line.push_str(&format!("  {cell:<10}"));
        }
        outln!("{line}");
    }
    let mut any = false;
    for n in &f.nodes {
        for c in n.checks.iter().filter(|c| !c.ok) {
            if !any {
                outln!("\nfailures:");
                any = true;
            }
            outln!(
                "  {} (as {}): {}: {}",
                Cell(&n.node),
                Cell(&n.user),
                Cell(&c.check),
                Cell(&c.detail)
            );
        }
    }
    for s in &f.not_answered {
        outln!("  {}: no results: {}", Cell(&s.node), Cell(&s.why));
    }
    let failed: usize = f.nodes.iter().map(HostResults::failed).sum();
    outln!(
        "\n{} node{} answered, {} failed check{}{}",
        f.nodes.len(),
        if f.nodes.len() == 1 { "" } else { "s" },
        failed,
        if failed == 1 { "" } else { "s" },
        if f.not_answered.is_empty() {
            String::new()
        } else {
            format!(", {} without results", f.not_answered.len())
        }
    );
}
