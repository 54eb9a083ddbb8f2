//! `plumb preflight SPEC.toml`: what a job needs of this host, checked
//! before it is launched (see `plumb_record::preflight` for the spec).
//! With `[user] run_as = true` the checks run as the job's user: plumb
//! (as root) starts itself again as that user and reads its results.

use crate::config::Config;
use crate::out::{outln, stdout};
use anyhow::{Context as _, Result, anyhow, bail};
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
}

/// The results of one host.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct HostResults {
    /// The host.
    pub node: String,
    /// The user the checks ran as.
    pub user: String,
    /// Every check's outcome.
    pub checks: Vec<Outcome>,
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
