//! A real PostgreSQL server for tests and benchmarks.
//!
//! [`server_url`] gives the URL of a server: `PLUMB_TEST_PG_URL` when it is
//! set, else a private cluster made with the machine's own PostgreSQL
//! (`initdb` and `pg_ctl`, run as the `postgres` user when this process is
//! root, since PostgreSQL refuses to run as root) in
//! `$TMPDIR/plumb-test-pg-UID`, listening on a free loopback port. The
//! first test process to need it makes and starts it under a file lock;
//! the others find it running. `cargo xtask test` stops it at the end
//! ([`stop_private`]). Without PostgreSQL installed, this fails naming what
//! to install: no test is skipped silently.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The URL of a PostgreSQL server for tests; see the module docs. Panics,
/// naming what is missing, when there is none and none can be started.
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Some(url) = std::env::var("PLUMB_TEST_PG_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            return url;
        }
        match start_private() {
            Ok(url) => url,
            Err(e) => panic!("no PostgreSQL server for the PostgreSQL tests: {e}"),
        }
    })
    .clone()
}

/// A URL for a fresh, empty store: the test server with a schema of its
/// own (created on first use), so tests never see each other's data.
pub fn fresh_store_url() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let url = server_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}schema=t_{}_{n}_{:x}",
        std::process::id(),
        nanos & 0xffff_ffff
    )
}

/// The private cluster's directory.
pub fn private_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("plumb-test-pg-{uid}"))
}

/// Where the machine's PostgreSQL server programs are: the newest
/// `/usr/lib/postgresql/N/bin`, else `PATH`.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("pg_ctl").exists() && d.join("initdb").exists())
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root.
fn pg(bin: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let exe = bin.join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed ({}): {}{}",
            exe.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn url_for(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

fn reachable(url: &str) -> bool {
    let Ok(mut config) = url.parse::<postgres::Config>() else {
        return false;
    };
    config.connect_timeout(std::time::Duration::from_secs(2));
    config
        .connect(postgres::NoTls)
        .and_then(|mut c| c.simple_query("SELECT 1"))
        .is_ok()
}

fn start_private() -> Result<String, String> {
    let dir = private_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock = std::fs::File::create(dir.with_extension("lock"))
        .map_err(|e| format!("cannot create the lock file beside {}: {e}", dir.display()))?;
    // SAFETY: flock on a valid descriptor we own; released when `lock`
    // is dropped at the end of this function.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    let port_file = dir.join("port");
    if let Some(port) = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        && reachable(&url_for(port))
    {
        return Ok(url_for(port));
    }
    let bin = bin_dir().ok_or(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed: \
         run `apt-get install postgresql` (or .ci/install-postgres.sh), or set PLUMB_TEST_PG_URL \
         to the URL of a server whose user may create schemas",
    )?;
    let data = dir.join("data");
    let data_s = data
        .to_str()
        .ok_or("the temporary directory is not UTF-8")?;
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("cannot run chown: {e}"))?;
        if !status.success() {
            return Err(format!("chown postgres {} failed", dir.display()));
        }
    }
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    if !data.join("PG_VERSION").exists() {
        let _ = std::fs::remove_dir_all(&data);
        pg(
            &bin,
            "initdb",
            &[
                "-D",
                data_s,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
    } else {
        // A cluster left by an earlier session whose server is gone.
        let _ = pg(&bin, "pg_ctl", &["-D", data_s, "-m", "immediate", "stop"]);
    }
    let port = free_port()?;
    let dir_s = dir.to_str().ok_or("the temporary directory is not UTF-8")?;
    let options = format!(
        "-p {port} -k {dir_s} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    );
    let log = dir.join("server.log");
    pg(
        &bin,
        "pg_ctl",
        &[
            "-D",
            data_s,
            "-l",
            log.to_str().ok_or("not UTF-8")?,
            "-o",
            &options,
            "-w",
            "-t",
            "60",
            "start",
        ],
    )?;
    let mut f = std::fs::File::create(&port_file)
        .map_err(|e| format!("cannot write {}: {e}", port_file.display()))?;
    let _ = writeln!(f, "{port}");
    let url = url_for(port);
    if !reachable(&url) {
        return Err(format!(
            "PostgreSQL started in {} but {url} does not answer; see {}",
            data.display(),
            log.display()
        ));
    }
    Ok(url)
}

/// Stops the private cluster, if one runs; returns whether it did.
pub fn stop_private() -> bool {
    let data = private_dir().join("data");
    let (Some(bin), Some(data_s)) = (bin_dir(), data.to_str()) else {
        return false;
    };
    data.join("postmaster.pid").exists()
        && pg(&bin, "pg_ctl", &["-D", data_s, "-m", "fast", "-w", "stop"]).is_ok()
}
