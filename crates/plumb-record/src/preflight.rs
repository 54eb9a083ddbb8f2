//! Preflight: what a job needs of a node, checked before it is launched
//! (`plumb preflight SPEC.toml`), on this host or on every node through
//! the agents.
//!
//! A spec is TOML, one table (or array of tables) per kind of check:
//!
//! ```toml
//! [user]                 # the job's user: exists, with this uid/gid
//! name = "svc"
//! uid = 1001
//! group = "svc"
//! run_as = true          # run every check as that user (plumb must be root)
//!
//! [[env]]                # a variable: set, or defaulted, and matching
//! name = "DATA_DIR"
//! default = "/data"
//! pattern = "^/"
//!
//! [[path]]               # tried, not inferred from mode bits
//! path = "/data/in"
//! access = "r"           # r, w, rw, x
//!
//! [[disk]]
//! path = "/data"
//! free = "10G"
//! inodes = 100000
//!
//! [[port]]
//! listen = 8080          # free to bind
//! [[port]]
//! connect = "127.0.0.1:5432"   # reachable
//!
//! [[command]]
//! name = "python3"
//! min_version = "3.10"
//!
//! [clock]
//! max_offset = "50ms"
//!
//! [lock]
//! file = "requirements.txt"   # relative to the spec
//! ```
//!
//! Unknown kinds and keys are errors naming the line. Every check gives a
//! [`Outcome`]: passed or not, with the value it saw or why it failed,
//! in words that name the check and the value.

use crate::lock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A preflight spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The job's user.
    #[serde(default)]
    pub user: Option<UserCheck>,
    /// Environment variables.
    #[serde(default)]
    pub env: Vec<EnvCheck>,
    /// Paths and the access the job needs.
    #[serde(default)]
    pub path: Vec<PathCheck>,
    /// Free space and inodes.
    #[serde(default)]
    pub disk: Vec<DiskCheck>,
    /// Ports to listen on or reach.
    #[serde(default)]
    pub port: Vec<PortCheck>,
    /// Commands and their versions.
    #[serde(default)]
    pub command: Vec<CommandCheck>,
    /// The clock's offset.
    #[serde(default)]
    pub clock: Option<ClockCheck>,
    /// A lock the environment must match.
    #[serde(default)]
    pub lock: Option<LockCheck>,
}

/// `[user]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCheck {
    /// User name.
    pub name: String,
    /// Expected uid.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Expected primary group name.
    #[serde(default)]
    pub group: Option<String>,
    /// Expected primary gid.
    #[serde(default)]
    pub gid: Option<u32>,
    /// Run every other check as this user.
    #[serde(default)]
    pub run_as: bool,
}

/// `[[env]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvCheck {
    /// Variable name.
    pub name: String,
    /// The value used when it is not set (then the check passes, showing
    /// it).
    #[serde(default)]
    pub default: Option<String>,
    /// A regular expression the value must match.
    #[serde(default)]
    pub pattern: Option<String>,
}

/// `[[path]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathCheck {
    /// The path.
    pub path: PathBuf,
    /// `r`, `w`, `rw`, `x` (default `r`).
    #[serde(default = "read_access")]
    pub access: String,
}

fn read_access() -> String {
    "r".into()
}

/// `[[disk]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskCheck {
    /// A path on the file system.
    pub path: PathBuf,
    /// Free space needed (`10G`).
    #[serde(default)]
    pub free: Option<String>,
    /// Free inodes needed.
    #[serde(default)]
    pub inodes: Option<u64>,
}

/// `[[port]]`: `listen` or `connect`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortCheck {
    /// A TCP port that must be free to listen on.
    #[serde(default)]
    pub listen: Option<u16>,
    /// `HOST:PORT` that must accept a TCP connection.
    #[serde(default)]
    pub connect: Option<String>,
    /// How long a connection may take (default 2s).
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `[[command]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// The command (looked up on PATH).
    pub name: String,
    /// The lowest version accepted.
    #[serde(default)]
    pub min_version: Option<String>,
    /// Arguments that print the version (default `--version`).
    #[serde(default)]
    pub version_args: Option<Vec<String>>,
}

/// `[clock]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockCheck {
    /// The largest offset accepted, with its error bound (`50ms`).
    pub max_offset: String,
}

/// `[lock]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockCheck {
    /// The lock file (relative to the spec's directory).
    pub file: PathBuf,
}

/// A spec that cannot be read: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// Parses a spec; `name` names it in errors (`spec.toml:3: ...`). Values
/// are validated here too (sizes, durations, patterns, access letters),
/// so a bad spec fails before any check runs.
pub fn parse(name: &str, text: &str) -> Result<Spec, SpecError> {
    let spec: Spec = toml::from_str(text).map_err(|e| {
        let line = crate::lock::toml_error_line(text, &e);
        let msg = e.message().trim().to_string();
        let msg = if msg.starts_with("unknown field") {
            format!("{msg} (an unknown check kind or key)")
        } else {
            msg
        };
        match line {
            Some(l) => SpecError(format!("{name}:{l}: {msg}")),
            None => SpecError(format!("{name}: {msg}")),
        }
    })?;
    let bad = |what: String| Err(SpecError(format!("{name}: {what}")));
    for e in &spec.env {
        if let Some(p) = &e.pattern
            && let Err(err) = regex::Regex::new(p)
        {
            return bad(format!("[[env]] {}: pattern `{p}`: {err}", e.name));
        }
    }
    for p in &spec.path {
        if !matches!(p.access.as_str(), "r" | "w" | "rw" | "x") {
            return bad(format!(
                "[[path]] {}: access `{}`: use r, w, rw or x",
                p.path.display(),
                p.access
            ));
        }
    }
    for d in &spec.disk {
        if let Some(f) = &d.free
            && let Err(err) = plumb_model::display::parse_size(f)
        {
            return bad(format!("[[disk]] {}: free: {err}", d.path.display()));
        }
    }
    for p in &spec.port {
        match (&p.listen, &p.connect) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return bad(
                    "[[port]]: give exactly one of listen = PORT or connect = \"HOST:PORT\"".into(),
                );
            }
        }
        if let Some(t) = &p.timeout
            && let Err(err) = plumb_model::parse_duration(t)
        {
            return bad(format!("[[port]] timeout: {err}"));
        }
    }
    if let Some(c) = &spec.clock
        && let Err(err) = plumb_model::parse_duration(&c.max_offset)
    {
        return bad(format!("[clock] max_offset: {err}"));
    }
    Ok(spec)
}

pub use plumb_model::preflight::Outcome;

fn outcome(check: String, r: Result<String, String>) -> Outcome {
    match r {
        Ok(detail) => Outcome {
            check,
            ok: true,
            detail,
        },
        Err(detail) => Outcome {
            check,
            ok: false,
            detail,
        },
    }
}

/// What the checks need from outside: the environment's components (for
/// the lock check) and the clock's measured offset.
pub struct Context<'a> {
    /// The directory relative paths in the spec start from.
    pub spec_dir: PathBuf,
    /// The variables the job would get.
    pub env: BTreeMap<String, String>,
    /// This host's components ([`plumb_model::env::components`] plus the
    /// installed Rust tools), computed when the lock check runs.
    pub components: &'a dyn Fn() -> BTreeMap<String, String>,
    /// The clock's offset and error bound in ns, or why it is unknown.
    pub clock: &'a dyn Fn() -> Result<(i64, i64), String>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("spec_dir", &self.spec_dir)
            .field("env", &self.env.len())
            .finish_non_exhaustive()
    }
}

/// Runs every check of `spec`, in the spec's order of kinds.
pub fn run(spec: &Spec, ctx: &Context<'_>) -> Vec<Outcome> {
    let mut out = Vec::new();
    if let Some(u) = &spec.user {
        out.push(outcome(format!("user {}", u.name), check_user(u)));
    }
    let secret = crate::Redactor::new(b"preflight");
    for e in &spec.env {
        out.push(outcome(
            format!("env {}", e.name),
            check_env(e, &ctx.env, secret.is_secret_name(&e.name)),
        ));
    }
    for p in &spec.path {
        let path = ctx.spec_dir.join(&p.path);
        out.push(outcome(
            format!("path {} {}", p.path.display(), p.access),
            check_path(&path, &p.access),
        ));
    }
    for d in &spec.disk {
        out.push(outcome(
            format!("disk {}", d.path.display()),
            check_disk(&ctx.spec_dir.join(&d.path), d),
        ));
    }
    for p in &spec.port {
        let (check, r) = match (&p.listen, &p.connect) {
            (Some(port), _) => (format!("port {port} free"), check_listen(*port)),
            (_, Some(addr)) => {
                let t = p
                    .timeout
                    .as_deref()
                    .and_then(|t| plumb_model::parse_duration(t).ok())
                    .unwrap_or(Duration::from_secs(2));
                (format!("port {addr} reachable"), check_connect(addr, t))
            }
            _ => continue,
        };
        out.push(outcome(check, r));
    }
    for c in &spec.command {
        out.push(outcome(
            format!("command {}", c.name),
            check_command(c, &ctx.env),
        ));
    }
    if let Some(c) = &spec.clock {
        let max = plumb_model::parse_duration(&c.max_offset).unwrap_or_default();
        let r = (ctx.clock)().and_then(|(off, err)| {
            let worst = off.unsigned_abs() + err.unsigned_abs();
            let shown = format!(
                "offset {} ± {}",
                plumb_model::display::duration(off),
                plumb_model::display::duration(err)
            );
            if worst as u128 <= max.as_nanos() {
                Ok(shown)
            } else {
                Err(format!("{shown}: beyond {}", c.max_offset))
            }
        });
        out.push(outcome(format!("clock within {}", c.max_offset), r));
    }
    if let Some(l) = &spec.lock {
        let path = ctx.spec_dir.join(&l.file);
        let r = lock::read(&path).map_err(|e| e.to_string()).and_then(|lk| {
            let c = lock::check(&lk, &(ctx.components)());
            if c.mismatches.is_empty() {
                Ok(format!("{} pins match", c.checked))
            } else {
                let shown: Vec<String> =
                    c.mismatches.iter().take(5).map(|m| m.to_string()).collect();
                let more = c.mismatches.len().saturating_sub(5);
                Err(format!(
                    "{} mismatch{}: {}{}",
                    c.mismatches.len(),
                    if c.mismatches.len() == 1 { "" } else { "es" },
                    shown.join("; "),
                    if more > 0 {
                        format!("; and {more} more")
                    } else {
                        String::new()
                    }
                ))
            }
        });
        out.push(outcome(format!("lock {}", l.file.display()), r));
    }
    out
}

/// A user's uid, gid and primary group name, from the system's user
/// database (NSS, so LDAP users count).
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives pwd's use.
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

fn group_name(gid: u32) -> Option<String> {
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in lookup_user.
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: gr_name points into buf, NUL-terminated, while buf lives.
    let name = unsafe { std::ffi::CStr::from_ptr(grp.gr_name) };
    Some(name.to_string_lossy().into_owned())
}

fn check_user(u: &UserCheck) -> Result<String, String> {
    let (uid, gid) = lookup_user(&u.name).ok_or_else(|| format!("no user named {}", u.name))?;
    let group = group_name(gid).unwrap_or_else(|| gid.to_string());
    let seen = format!("uid={uid} gid={gid}({group})");
    if let Some(want) = u.uid
        && want != uid
    {
        return Err(format!("{seen}: expected uid {want}"));
    }
    if let Some(want) = u.gid
        && want != gid
    {
        return Err(format!("{seen}: expected gid {want}"));
    }
    if let Some(want) = &u.group
        && want != &group
    {
        return Err(format!("{seen}: expected group {want}"));
    }
    Ok(seen)
}

fn check_env(e: &EnvCheck, env: &BTreeMap<String, String>, secret: bool) -> Result<String, String> {
    let (value, how) = match (env.get(&e.name), &e.default) {
        (Some(v), _) => (v.clone(), "set"),
        (None, Some(d)) => (d.clone(), "not set, default"),
        (None, None) => return Err("not set, and no default".into()),
    };
    let shown = if secret {
        format!(
            "{how} ({} characters, a secret: not shown)",
            value.chars().count()
        )
    } else {
        format!("{how}: {value}")
    };
    if let Some(p) = &e.pattern {
        let re = regex::Regex::new(p).map_err(|err| format!("pattern `{p}`: {err}"))?;
        if !re.is_match(&value) {
            return Err(format!("{shown}: does not match `{p}`"));
        }
    }
    Ok(shown)
}

fn check_path(path: &Path, access: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let kind = if meta.is_dir() { "directory" } else { "file" };
    let mut did = Vec::new();
    if access.contains('r') {
        if meta.is_dir() {
            std::fs::read_dir(path).map_err(|e| format!("listing the {kind}: {e}"))?;
            did.push("listed");
        } else {
            std::fs::File::open(path).map_err(|e| format!("opening the {kind} to read: {e}"))?;
            did.push("opened to read");
        }
    }
    if access.contains('w') {
        if meta.is_dir() {
            let probe = path.join(format!(".plumb-preflight-{}", std::process::id()));
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .map_err(|e| format!("creating a file in the {kind}: {e}"))?;
            let _ = std::fs::remove_file(&probe);
            did.push("created a file in it");
        } else {
            // Appending opens for writing without changing a byte.
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| format!("opening the {kind} to write: {e}"))?;
            did.push("opened to write");
        }
    }
    if access == "x" {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| "the path has a NUL byte".to_string())?;
        // SAFETY: c is a valid C string. The kernel answers for the
        // effective user, ACLs included.
        let rc =
            unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) };
        if rc != 0 {
            return Err(format!(
                "not executable ({})",
                std::io::Error::last_os_error()
            ));
        }
        did.push(if meta.is_dir() {
            "searchable"
        } else {
            "executable"
        });
    }
    Ok(format!("{kind}, {}", did.join(", ")))
}

fn check_disk(path: &Path, d: &DiskCheck) -> Result<String, String> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "the path has a NUL byte".to_string())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is valid; st is written by the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "{}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    let inodes = st.f_favail as u64;
    let seen = format!(
        "{} free, {inodes} inodes free",
        plumb_model::display::size(free)
    );
    if let Some(want) = &d.free {
        let want_b = plumb_model::display::parse_size(want).unwrap_or(0);
        if free < want_b {
            return Err(format!("{seen}: needs {want}"));
        }
    }
    if let Some(want) = d.inodes
        && inodes < want
    {
        return Err(format!("{seen}: needs {want} inodes"));
    }
    Ok(seen)
}

fn check_listen(port: u16) -> Result<String, String> {
    match std::net::TcpListener::bind(("0.0.0.0", port)) {
        Ok(_) => Ok("free".into()),
        Err(e) => Err(format!("cannot listen on {port}: {e}")),
    }
}

fn check_connect(addr: &str, timeout: Duration) -> Result<String, String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .collect();
    let mut last = format!("{addr}: no address");
    for a in addrs {
        let t0 = std::time::Instant::now();
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => {
                return Ok(format!(
                    "connected to {a} in {}",
                    plumb_model::display::duration(t0.elapsed().as_nanos() as i64)
                ));
            }
            Err(e) => last = format!("connecting to {a}: {e}"),
        }
    }
    Err(last)
}

/// The first dotted number in `s` (`Python 3.11.7` -> `3.11.7`).
pub fn version_in(s: &str) -> Option<String> {
    let re = regex::Regex::new(r"\d+(?:\.\d+)+").ok()?;
    re.find(s).map(|m| m.as_str().to_string())
}

/// Compares dotted versions numerically (`3.10` > `3.9`).
pub fn version_at_least(have: &str, want: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split('.')
            .map(|p| {
                p.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    };
    let (a, b) = (parts(have), parts(want));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x > y;
        }
    }
    true
}

fn check_command(c: &CommandCheck, env: &BTreeMap<String, String>) -> Result<String, String> {
    let path_var = env.get("PATH").cloned().unwrap_or_default();
    let found = if c.name.contains('/') {
        Some(PathBuf::from(&c.name)).filter(|p| p.is_file())
    } else {
        std::env::split_paths(&path_var)
            .map(|d| d.join(&c.name))
            .find(|p| p.is_file())
    };
    let exe = found.ok_or_else(|| format!("{} not found on PATH", c.name))?;
    let Some(min) = &c.min_version else {
        return Ok(exe.display().to_string());
    };
    let args = c
        .version_args
        .clone()
        .unwrap_or_else(|| vec!["--version".into()]);
    let out = std::process::Command::new(&exe)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {} {}: {e}", exe.display(), args.join(" ")))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let have = version_in(&said).ok_or_else(|| {
        format!(
            "no version in the output of {} {}",
            exe.display(),
            args.join(" ")
        )
    })?;
    if version_at_least(&have, min) {
        Ok(format!("{} {have}", exe.display()))
    } else {
        Err(format!("{} {have}: older than {min}", exe.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_specs_name_the_line_and_the_problem() {
        let e = parse("s.toml", "[user]\nname = \"x\"\n\n[[pth]]\npath = \"/\"\n").unwrap_err();
        assert!(e.0.starts_with("s.toml:4:"), "{e}");
        assert!(e.0.contains("pth"), "{e}");
        let e = parse("s.toml", "[[path]]\npath = \"/\"\nacces = \"r\"\n").unwrap_err();
        assert!(e.0.starts_with("s.toml:3:"), "{e}");
        let e = parse("s.toml", "[[path]]\npath = \"/\"\naccess = \"q\"\n").unwrap_err();
        assert!(e.0.contains("use r, w, rw or x"), "{e}");
        let e = parse("s.toml", "[[disk]]\npath = \"/\"\nfree = \"lots\"\n").unwrap_err();
        assert!(e.0.contains("free"), "{e}");
        let e = parse("s.toml", "[[env]]\nname = \"X\"\npattern = \"(\"\n").unwrap_err();
        assert!(e.0.contains("pattern"), "{e}");
        let e = parse("s.toml", "[[port]]\n").unwrap_err();
        assert!(e.0.contains("exactly one"), "{e}");
        let e = parse("s.toml", "[clock]\nmax_offset = \"5\"\n").unwrap_err();
        assert!(e.0.contains("max_offset"), "{e}");
        let e = parse("s.toml", "[user\n").unwrap_err();
        assert!(e.0.starts_with("s.toml:1:"), "{e}");
        assert!(parse("s.toml", "").unwrap() == Spec::default());
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(version_in("Python 3.11.7\n").as_deref(), Some("3.11.7"));
        assert_eq!(version_in("git version 2.39.5").as_deref(), Some("2.39.5"));
        assert!(version_at_least("3.11.7", "3.10"));
        assert!(!version_at_least("3.9.18", "3.10"));
        assert!(version_at_least("2.0", "2"));
    }

    #[test]
    fn env_checks_show_values_defaults_and_hide_secrets() {
        let env = BTreeMap::from([
            ("DATA".to_string(), "/data".to_string()),
            ("API_TOKEN".to_string(), "abc".to_string()),
        ]);
        let c = |name: &str, default: Option<&str>, pattern: Option<&str>, secret: bool| {
            check_env(
                &EnvCheck {
                    name: name.into(),
                    default: default.map(Into::into),
                    pattern: pattern.map(Into::into),
                },
                &env,
                secret,
            )
        };
        assert_eq!(c("DATA", None, Some("^/"), false).unwrap(), "set: /data");
        assert!(
            c("DATA", None, Some("^s3://"), false)
                .unwrap_err()
                .contains("does not match")
        );
        assert_eq!(
            c("MODE", Some("fast"), None, false).unwrap(),
            "not set, default: fast"
        );
        assert_eq!(
            c("MISSING", None, None, false).unwrap_err(),
            "not set, and no default"
        );
        let s = c("API_TOKEN", None, None, true).unwrap();
        assert!(!s.contains("abc") && s.contains("3 characters"), "{s}");
    }
}
