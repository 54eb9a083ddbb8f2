//! Fixtures shared by every integration test of the `plumb` binary: the
//! binary itself, a fresh store (`Home`), a real `plumb serve` on loopback
//! (`Serve`, built with `Serve::builder()`), a real `plumb agent`
//! (`Agent`), one raw HTTP helper (`http`) and one bounded poll
//! (`wait_for`). Each test file says `mod support;` and uses what it needs,
//! so the rest is dead code in that file's binary.

#![allow(dead_code)]

// The upstream servers of plumb-proxy's tests, so `plumb proxy` is tested
// against the same echo.
#[path = "../../../plumb-proxy/tests/proxy/upstream.rs"]
mod upstream;
#[allow(unused_imports)] // Only the proxy tests use it.
pub use upstream::echo_server;

use plumb_store::prelude::*;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `plumb` binary under test.
pub const PLUMB: &str = env!("CARGO_BIN_EXE_plumb");

/// A `plumb` command that ignores the environment of whoever runs the
/// tests: no configured collector, config file, token, CA, outbox or spool.
/// Stdin is null; `PLUMB_HOME` is left for the caller to set.
pub fn plumb() -> Command {
    let mut c = Command::new(PLUMB);
    for var in [
        "PLUMB_COLLECTOR",
        "PLUMB_CONFIG",
        "PLUMB_TOKEN",
        "PLUMB_CA_CERT",
        "PLUMB_OUTBOX",
        "PLUMB_SPOOL",
        "PLUMB_SPOOL_MAX",
    ] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

/// [`plumb`] with `home` as its store (`PLUMB_HOME`) and working directory.
pub fn plumb_in(home: &Path) -> Command {
    let mut c = plumb();
    c.env("PLUMB_HOME", home).current_dir(home);
    c
}

/// [`plumb`] `ARGS` with its store in `dir/home` and its spool in
/// `dir/spool`, run in `dir`: for tests whose commands share a directory
/// with the collector they talk to.
pub fn plumb_at(dir: &Path, args: &[&str]) -> Command {
    let mut c = plumb();
    c.args(args)
        .env("PLUMB_HOME", dir.join("home"))
        .env("PLUMB_SPOOL", dir.join("spool"))
        .current_dir(dir);
    c
}

/// Asserts that `out` succeeded, naming `what` and showing its stderr if not.
#[track_caller]
pub fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Bytes as text, lossily.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, empty plumb home in a temporary directory, removed on drop:
/// the store is `DIR/store` (`PLUMB_HOME`), the spool `DIR/spool`
/// (`PLUMB_SPOOL`), and commands run in `DIR`.
pub struct Home {
    tmp: tempfile::TempDir,
}

impl Default for Home {
    fn default() -> Self {
        Home::new()
    }
}

impl Home {
    pub fn new() -> Home {
        Home {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    /// The temporary directory holding store and spool; the commands'
    /// working directory.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The store directory (`PLUMB_HOME`).
    pub fn store(&self) -> PathBuf {
        self.dir().join("store")
    }

    /// `plumb ARGS` in this home.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = plumb();
        c.args(args)
            .env("PLUMB_HOME", self.store())
            .env("PLUMB_SPOOL", self.dir().join("spool"))
            .current_dir(self.dir());
        c
    }

    /// Runs `plumb ARGS` in this home and returns what it did.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs `plumb ARGS`, asserts it succeeded and parses its stdout as
    /// JSON.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = ok(self.run(args), &format!("plumb {args:?}"));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The store this home's commands wrote, opened read-only.
    pub fn open_store(&self) -> plumb_store::Store {
        plumb_store::Store::open_read_only(&self.store()).unwrap()
    }
}

/// A free loopback port (free now; the collector binds it right after).
/// Only for tests that must restart a collector at the same address;
/// everything else lets `plumb serve` pick its own port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node's home (`DIR/node`, created) beside a collector's store directory
/// (`DIR/collector`) in a fresh temporary directory, and a port picked for
/// the collector so it can start late or restart at the same URL: the
/// setting of the shipping and agent tests.
pub struct Site {
    pub home: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    /// `http://127.0.0.1:PORT`, whether or not the collector is up.
    pub url: String,
    tmp: tempfile::TempDir,
}

impl Default for Site {
    fn default() -> Self {
        Site::new()
    }
}

impl Site {
    pub fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("node");
        std::fs::create_dir_all(&home).unwrap();
        let port = free_port();
        Site {
            home,
            data: tmp.path().join("collector"),
            port,
            url: format!("http://127.0.0.1:{port}"),
            tmp,
        }
    }

    /// The temporary directory holding both.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Starts the collector on the site's store and port.
    pub fn serve(&self) -> Serve {
        Serve::builder().data(&self.data).port(self.port).start()
    }
}

/// Sends `sig` to a process this test started.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid this test spawned and a valid signal.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A small tmpfs mounted over a fresh temporary directory (mode 0700), for
/// tests that fill a disk; unmounted on drop. Mounting needs root
/// (CAP_SYS_ADMIN): the test fails naming why when it cannot.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        Tmpfs::mount_as("tmpfs", &format!("size={size},mode=0700"))
    }

    /// A ramfs: memory like a tmpfs, without a size limit, and refusing
    /// O_DIRECT (which a tmpfs takes on recent kernels).
    pub fn ramfs() -> Tmpfs {
        Tmpfs::mount_as("ramfs", "mode=0700")
    }

    fn mount_as(kind: &str, options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", kind, "-o", options, kind])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount(8) (disk tests need it, as root): {e}"));
        assert!(
            out.status.success(),
            "cannot mount a {kind} ({options}; disk tests need root or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Grows or shrinks the mounted file system.
    pub fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .output()
            .unwrap();
        ok(out, "mount -o remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Asserts that `promtool check metrics` accepts `text` (Prometheus's
/// exposition format checker; Debian package prometheus).
#[track_caller]
pub fn promtool_ok(text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; see .ci/install-collector.sh)");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this machine lets an unprivileged user namespace set its own
/// host name (`unshare -r -u`), which the multi-node tests use.
pub fn unshare_works() -> bool {
    Command::new("unshare")
        .args(["-r", "-u", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How to start a `plumb serve`; see [`Serve::builder`].
#[derive(Default)]
pub struct ServeBuilder {
    data: Option<PathBuf>,
    store: Option<String>,
    port: Option<u16>,
    otlp: bool,
    tokens: bool,
    tls: bool,
    nofile: Option<u32>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl ServeBuilder {
    /// A store URL instead of a directory (`plumb serve --store`), e.g. a
    /// PostgreSQL store a restarted collector should find again.
    pub fn store(mut self, url: &str) -> Self {
        self.store = Some(url.to_string());
        self
    }

    /// A fresh, empty PostgreSQL store on the tests' server (see
    /// `plumb_store_postgres::testing`).
    pub fn postgres(self) -> Self {
        self.store(&plumb_store_postgres::testing::fresh_store_url())
    }

    /// Store directory (default: a fresh one the handle owns).
    pub fn data(mut self, dir: &Path) -> Self {
        self.data = Some(dir.to_path_buf());
        self
    }

    /// A fixed API port, so the collector can be restarted at the same
    /// address (default: one `plumb serve` picks).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Also listen for OTLP/HTTP on a free loopback port (default off).
    pub fn otlp(mut self) -> Self {
        self.otlp = true;
        self
    }

    /// Create an admin, an agent and a viewer token (`plumb token create`)
    /// before starting, so the collector checks tokens.
    pub fn tokens(mut self) -> Self {
        self.tokens = true;
        self
    }

    /// Serve HTTPS with a fresh self-signed certificate for 127.0.0.1,
    /// whose PEM is [`Serve::ca`].
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Run under `ulimit -n N` (through `sh -c`, so the limit is the
    /// collector's own).
    pub fn nofile(mut self, n: u32) -> Self {
        self.nofile = Some(n);
        self
    }

    /// More `plumb serve` arguments (limits, timeouts, ...).
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// An environment variable for the collector.
    pub fn env(
        mut self,
        key: impl AsRef<std::ffi::OsStr>,
        value: impl AsRef<std::ffi::OsStr>,
    ) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Starts the collector and waits until it has bound its ports (and,
    /// over plain HTTP, answers `/readyz`).
    pub fn start(self) -> Serve {
        // The log and certificates live beside the store, not in it, so a
        // test that fills the store's disk does not fill the log's.
        let tmp = tempfile::tempdir().unwrap();
        let data = self.data.clone().unwrap_or_else(|| tmp.path().join("data"));
        // PLUMB_TEST_STORE=postgres runs every collector that names no
        // store of its own on PostgreSQL (the collector tests' second pass
        // in `cargo xtask test`).
        let store = self.store.clone().or_else(|| {
            (self.data.is_none() && std::env::var("PLUMB_TEST_STORE").as_deref() == Ok("postgres"))
                .then(plumb_store_postgres::testing::fresh_store_url)
        });
        let mut serve = Serve {
            store,
            child: None,
            api: String::new(),
            otlp: None,
            data,
            admin: None,
            agent: None,
            viewer: None,
            ca: None,
            log: tmp.path().join("serve.log"),
            _tmp: tmp,
        };
        if self.tokens {
            serve.admin = Some(serve.token("admin"));
            serve.agent = Some(serve.token("agent"));
            serve.viewer = Some(serve.token("viewer"));
        }
        let mut args: Vec<OsString> = vec!["serve".into(), "--listen".into()];
        args.push(format!("127.0.0.1:{}", self.port.unwrap_or(0)).into());
        args.push("--otlp-listen".into());
        args.push(if self.otlp { "127.0.0.1:0" } else { "off" }.into());
        match &serve.store {
            Some(url) => args.extend(["--store".into(), url.into()]),
            None => args.extend(["--data".into(), serve.data.clone().into()]),
        }
        if self.tls {
            let cert = rcgen::generate_simple_self_signed(vec![
                "127.0.0.1".to_string(),
                "localhost".to_string(),
            ])
            .unwrap();
            let dir = serve._tmp.path();
            std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
            std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
            args.extend(["--tls-cert".into(), dir.join("cert.pem").into()]);
            args.extend(["--tls-key".into(), dir.join("key.pem").into()]);
            serve.ca = Some(dir.join("cert.pem"));
        }
        args.extend(self.args);
        let mut cmd = match self.nofile {
            None => {
                let mut c = plumb();
                c.args(&args);
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(PLUMB)
                    .args(&args)
                    .stdin(Stdio::null());
                for var in ["PLUMB_COLLECTOR", "PLUMB_CONFIG", "PLUMB_TOKEN"] {
                    c.env_remove(var);
                }
                c
            }
        };
        cmd.env("PLUMB_HOME", &serve.data)
            .envs(self.env)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&serve.log).unwrap());
        let mut child = cmd.spawn().expect("plumb serve starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        serve.child = Some(child);
        for _ in 0..if self.otlp { 2 } else { 1 } {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["api", url] => serve.api = url.to_string(),
                ["otlp", url] => serve.otlp = Some(url.to_string()),
                _ => panic!(
                    "plumb serve printed {line:?} instead of its addresses; its log:\n{}",
                    serve.log_text()
                ),
            }
        }
        if !self.tls {
            wait_for(
                "the collector to answer /readyz",
                Duration::from_secs(30),
                || (http(&serve.api, "GET", "/readyz", &[], b"").status == 200).then_some(()),
            );
        }
        serve
    }
}

/// A running `plumb serve`, killed on drop. When the test is failing its
/// log (stderr) is printed then, so the failure shows what the collector
/// said.
pub struct Serve {
    /// The store URL, when the collector is not on the SQLite store in
    /// `data`.
    pub store: Option<String>,
    child: Option<Child>,
    /// The API (and dashboard) URL, `http://127.0.0.1:PORT` (https with TLS).
    pub api: String,
    /// The OTLP/HTTP URL, when started with [`ServeBuilder::otlp`].
    pub otlp: Option<String>,
    /// The store directory.
    pub data: PathBuf,
    /// Tokens, when started with [`ServeBuilder::tokens`].
    pub admin: Option<String>,
    pub agent: Option<String>,
    pub viewer: Option<String>,
    /// The certificate to trust, when started with [`ServeBuilder::tls`].
    pub ca: Option<PathBuf>,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Serve {
    pub fn builder() -> ServeBuilder {
        ServeBuilder::default()
    }

    /// A collector on its own store, API only, no tokens.
    pub fn start(data: &Path) -> Serve {
        Serve::builder().data(data).start()
    }

    /// The OTLP URL; panics when started without OTLP.
    pub fn otlp(&self) -> &str {
        self.otlp.as_deref().expect("started with .otlp()")
    }

    /// Creates a token of `role` for this collector's store.
    pub fn token(&self, role: &str) -> String {
        let mut cmd = plumb();
        cmd.args(["token", "create", "--role", role]);
        match &self.store {
            Some(url) => cmd.args(["--store", url]),
            None => cmd.arg("--data").arg(&self.data),
        };
        let out = cmd.env("PLUMB_HOME", &self.data).output().unwrap();
        text(&ok(out, "plumb token create").stdout)
            .trim()
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the collector with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// What the collector wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A field of /proc/PID/status in KiB (`VmRSS:`, `VmHWM:`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
    }

    /// [`get`] on the API.
    pub fn get(&self, path: &str) -> Option<String> {
        get(&self.api, path)
    }

    /// [`get_json`] on the API.
    #[track_caller]
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        get_json(&self.api, path)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // Test output, not diagnostics: the harness shows it with the
            // failure.
            eprintln!(
                "--- plumb serve log ({}) ---\n{}",
                self.api,
                self.log_text()
            );
        }
    }
}

/// A `plumb agent` reporting to `collector` as node `name` every
/// `interval`, from its own home; killed on drop.
pub struct Agent {
    pub proc: Proc,
    pub home: PathBuf,
}

impl Agent {
    /// Starts `plumb agent --name NAME --interval INTERVAL --collector URL
    /// EXTRA...` with `home` as its PLUMB_HOME.
    pub fn start(
        home: &Path,
        collector: &str,
        name: &str,
        interval: &str,
        extra: &[&str],
    ) -> Agent {
        std::fs::create_dir_all(home).unwrap();
        let child = plumb_in(home)
            .args([
                "agent",
                "--name",
                name,
                "--interval",
                interval,
                "--collector",
                collector,
            ])
            .args(extra)
            .spawn()
            .expect("plumb agent starts");
        Agent {
            proc: Proc(child),
            home: home.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Headers by lower-case name (the last of a repeated one).
    pub headers: std::collections::HashMap<String, String>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Answer {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Retry-After in seconds, if sent.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after").and_then(|v| v.parse().ok())
    }

    pub fn text(&self) -> String {
        text(&self.body)
    }

    /// Asserts "retry later": 503 with Retry-After `secs`, and a message
    /// naming `why`; `what` names the request in the failure.
    #[track_caller]
    pub fn assert_retry_later(&self, what: &str, secs: u64, why: &str) {
        let text = self.text();
        assert_eq!(self.status, 503, "{what}: {text}");
        assert_eq!(self.retry_after(), Some(secs), "{what}: {:?}", self.headers);
        assert!(text.contains(why), "{what}: the answer says why: {text}");
    }

    /// The status and the body as text, for tests that compare both.
    pub fn status_and_text(&self) -> (u16, String) {
        (self.status, self.text())
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request over a fresh plain loopback connection to `base`
/// (`http://HOST:PORT`), for requests a test must craft itself. Adds Host,
/// Content-Length and `Connection: close` unless `headers` sets them.
pub fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let addr = host_of(base);
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has("content-length") && (!body.is_empty() || method != "GET") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    http_raw(base, &head, body)
}

/// Writes `head` (a whole request head, blank line included) and `body` to
/// a fresh connection to `base` and reads the answer until the server
/// closes. For requests that must be malformed on purpose.
pub fn http_raw(base: &str, head: &str, body: &[u8]) -> Answer {
    let addr = host_of(base);
    let mut s = std::net::TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (and close) before reading a body it refuses.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    parse_answer(&resp)
}

fn host_of(base: &str) -> &str {
    assert!(
        !base.starts_with("https://"),
        "support::http speaks plain HTTP only, not to {base}"
    );
    base.trim_start_matches("http://").trim_end_matches('/')
}

/// Parses a whole HTTP/1.1 response.
pub fn parse_answer(resp: &[u8]) -> Answer {
    let split = memchr::memmem::find(resp, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", text(resp)));
    let head = text(&resp[..split]);
    let raw = &resp[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
    let headers: std::collections::HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // Each pass consumes a chunk, so this ends within raw.len() passes.
    while let Some(eol) = memchr::memmem::find(raw, b"\r\n") {
        let size = usize::from_str_radix(text(&raw[..eol]).split(';').next().unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = raw.get(end + 2..).unwrap_or_default();
    }
    out
}

/// A node report as `plumb agent` posts it to `/api/v1/ingest/node`, for
/// node `name`: 4 CPUs, 8 GiB of memory (3 available), one ext4 disk at `/`
/// with 4 of 100 GiB free, and a software fingerprint `hash` whose OS is
/// `os`. Tests set the fields they look at (labels, disks, runs).
pub fn node_report(name: &str, hash: &str, os: &str) -> serde_json::Value {
    serde_json::json!({
        "version": 1, "node": name, "sent": 0, "seq": 1, "interval_ms": 60000,
        "labels": {},
        "cpu": {"load1": 0.25, "load5": 0.2, "load15": 0.1, "cpus": 4},
        "memory": {"total": 8u64 << 30, "available": 3u64 << 30, "swap_total": 0, "swap_free": 0},
        "disks": [{"mount": "/", "fs_type": "ext4", "device": "/dev/sda1",
                   "total": 100u64 << 30, "available": 4u64 << 30, "inodes_total": 1000, "inodes_free": 900}],
        "runs_in_progress": 0,
        "fingerprint": {"hash": hash, "fingerprint": {"os": {"id": os, "version": "1",
                        "pretty": os, "kernel": "6", "arch": "x86_64"}}}
    })
}

/// `GET path` with no token; `None` unless it answers 2xx.
pub fn get(base: &str, path: &str) -> Option<String> {
    let a = http(base, "GET", path, &[], b"");
    (200..300).contains(&a.status).then(|| a.text())
}

/// `GET path` with no token, parsed as JSON; panics unless it answers 2xx.
#[track_caller]
pub fn get_json(base: &str, path: &str) -> serde_json::Value {
    let a = http(base, "GET", path, &[], b"");
    assert!(
        (200..300).contains(&a.status),
        "GET {path}: {} {}",
        a.status,
        a.text()
    );
    a.json()
}

/// Polls `f` every 50 ms until it returns `Some`, and returns that; panics
/// naming `what` when `timeout` passes first.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A finished run with `lines` lines of output (`NAME line I payload`), as
/// the spool frames `plumb run` would ship: the run, the frames and the
/// output they hold.
pub fn spooled_run(
    name: &str,
    lines: usize,
) -> (plumb_model::Run, plumb_store::spool::Frames, Vec<u8>) {
    use plumb_model::{Run, RunState, Stream, Timestamp, new_id};
    let mut run = Run::new(new_id(), name.into(), Timestamp::now());
    run.host.hostname = "node-t".into();
    run.state = RunState::Succeeded;
    run.ended = Some(Timestamp::now());
    let mut b = plumb_store::chunk::ChunkBuilder::new(Stream::Stdout);
    let mut chunks = Vec::new();
    let mut text = Vec::new();
    for i in 0..lines {
        let line = format!("{name} line {i} payload\n");
        b.push(i as u64, Timestamp::now(), line.as_bytes(), &mut chunks);
        text.extend_from_slice(line.as_bytes());
    }
    b.flush(&mut chunks);
    let mut f = plumb_store::spool::Frames::default();
    f.put_run(&run).put_chunks(&chunks);
    (run, f, text)
}

/// Spool files waiting in an outbox or spool directory.
pub fn spool_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "spool"))
                .collect()
        })
        .unwrap_or_default()
}

/// The stdout a store holds for a run, byte for byte; `None` while the
/// store or the run is not there.
pub fn stored_stdout(data: &Path, run: &str) -> Option<Vec<u8>> {
    let store = plumb_store::Store::open_read_only(data).ok()?;
    let id = plumb_model::Uuid::parse_str(run.trim()).ok()?;
    store.get_run(id).ok()?;
    let mut out = Vec::new();
    let mut cursor = plumb_store::OutputCursor::default();
    store
        .replay_output(
            id,
            Some(plumb_model::Stream::Stdout),
            &mut cursor,
            &mut |p| {
                out.extend_from_slice(p.bytes());
                Ok(())
            },
        )
        .ok()?;
    Some(out)
}

/// Whether a store holds the run as ended.
pub fn stored_ended(data: &Path, run: &str) -> bool {
    let Ok(store) = plumb_store::Store::open_read_only(data) else {
        return false;
    };
    let Ok(id) = plumb_model::Uuid::parse_str(run.trim()) else {
        return false;
    };
    store.get_run(id).is_ok_and(|r| r.ended.is_some())
}

/// A non-root system user named `name` (no home, no shell), created on
/// first use and kept: `(uid, gid)`. Needs root.
pub fn system_user(name: &str) -> (u32, u32) {
    if let Some(ids) = plumb_record::preflight::lookup_user(name) {
        return ids;
    }
    let out = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ])
        .output()
        .expect("useradd (package passwd; the test needs root)");
    // Another test binary may have created it meanwhile.
    assert!(
        out.status.success() || plumb_record::preflight::lookup_user(name).is_some(),
        "useradd {name}: {}",
        text(&out.stderr)
    );
    plumb_record::preflight::lookup_user(name).unwrap()
}

/// libfaketime's preload library. Missing is a failure naming the
/// package, never a silent skip.
pub fn faketime_lib() -> PathBuf {
    // The one plumb itself uses (its multithreaded build first).
    plumb_chaos::target::faketime_lib().unwrap_or_else(|| {
        panic!(
            "libfaketime is missing: install the Debian package `faketime` (.ci/install-clock.sh)"
        )
    })
}

/// `plumb agent --name NAME` reporting to `api` every 200 ms and probing
/// its clock as often, from its own home under `dir`, its clock shifted by
/// `shift` (libfaketime's syntax, `+5s`) when given.
pub fn clock_agent(dir: &Path, api: &str, name: &str, shift: Option<&str>) -> Proc {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = plumb_in(&home);
    cmd.args([
        "agent",
        "--name",
        name,
        "--interval",
        "200ms",
        "--clock-every",
        "200ms",
        "--collector",
        api,
    ]);
    if let Some(s) = shift {
        cmd = shifted(cmd, s);
    }
    Proc(cmd.spawn().expect("plumb agent starts"))
}

/// `cmd` on a clock shifted by `shift` (libfaketime's relative syntax,
/// `+5s`). FAKETIME_DONT_RESET keeps the shift for the threads and
/// children of the process rather than restarting it.
pub fn shifted(mut cmd: Command, shift: &str) -> Command {
    cmd.env("LD_PRELOAD", faketime_lib())
        .env("FAKETIME", shift)
        .env("FAKETIME_DONT_RESET", "1");
    cmd
}

/// A hostile run name for the chart tests: markup, quotes and length.
pub const HOSTILE_NAME: &str = "<script>alert('chart')</script>&\"x";

/// Seeds the store in `data` with runs spread over the three UTC days
/// before today, for the chart tests: `nightly` every two hours of the
/// first and third day (a failure every fifth, days with no runs between),
/// a few runs of a hostile name and of a 300-character one, and one run
/// written as running and then replaced by its failed record. Returns
/// every run as finally stored.
pub fn seed_chart_runs(data: &Path) -> Vec<plumb_model::Run> {
    use plumb_model::{Run, RunState, Timestamp};
    let store = plumb_store::Store::open(data).unwrap();
    const HOUR: i64 = 3_600_000_000_000;
    let now = Timestamp::now().as_nanos();
    // Midnight UTC three days ago: day 1 has no `nightly` runs.
    let t0 = now - now.rem_euclid(24 * HOUR) - 72 * HOUR;
    let mut runs = Vec::new();
    let mut make = |name: &str, at: i64, state: RunState, secs: i64| {
        let mut r = Run::new(
            plumb_model::new_id(),
            name.into(),
            Timestamp::from_nanos(at),
        );
        r.host.hostname = "seed-node".into();
        r.state = state;
        if state.is_final() {
            r.ended = Some(Timestamp::from_nanos(at + secs * 1_000_000_000));
        }
        runs.push(r);
    };
    let mut k = 0;
    for day in [0i64, 2] {
        for h in (0..24).step_by(2) {
            let state = if k % 5 == 4 {
                RunState::Failed
            } else {
                RunState::Succeeded
            };
            make(
                "nightly",
                t0 + (day * 24 + h) * HOUR + 60_000_000_000,
                state,
                60 + k * 3,
            );
            k += 1;
        }
    }
    for i in 0..3 {
        make(HOSTILE_NAME, t0 + (30 + i) * HOUR, RunState::Killed, 5);
    }
    make(&"long".repeat(75), t0 + 40 * HOUR, RunState::Evicted, 7);
    store.put_runs(&runs).unwrap();
    // Running, then its final record: counted once, as failed.
    let mut flip = Run::new(
        plumb_model::new_id(),
        "nightly".into(),
        Timestamp::from_nanos(t0 + 49 * HOUR),
    );
    flip.host.hostname = "seed-node".into();
    flip.state = RunState::Running;
    store.put_run(&flip).unwrap();
    flip.state = RunState::Failed;
    flip.ended = Some(Timestamp::from_nanos(t0 + 49 * HOUR + 90_000_000_000));
    store.put_run(&flip).unwrap();
    runs.push(flip);
    runs
}

/// A webhook receiver on 127.0.0.1 keeping every JSON body posted to it
/// (an alert receiver for tests of the alert rules).
pub struct WebhookReceiver {
    /// Where to post: `http://127.0.0.1:PORT/hook`.
    pub url: String,
    /// Every payload received, in order.
    pub got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl WebhookReceiver {
    /// Writes `dir/plumb.toml`: alerts evaluated every 200 ms, the given
    /// `[alerts.rules.*]` text, and this receiver as the webhook; returns
    /// its path (for `PLUMB_CONFIG`).
    pub fn config(&self, dir: &Path, rules: &str) -> PathBuf {
        let path = dir.join("plumb.toml");
        std::fs::write(
            &path,
            format!(
                "[alerts]\ninterval = \"200ms\"\n\n{rules}\n[[alerts.webhook]]\nurl = \"{}\"\n",
                self.url
            ),
        )
        .unwrap();
        path
    }

    /// Listens on a free loopback port, on a thread of its own.
    pub fn start() -> WebhookReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(body) = read_webhook(stream) {
                    g.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).expect("the payload is JSON"));
                }
            }
        });
        WebhookReceiver { url, got }
    }

    /// Every alert received so far (of every payload), in order.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits up to `secs` for a firing alert `alertname` whose labels
    /// include `labels`, and returns it.
    pub fn firing(&self, alertname: &str, labels: &[(&str, &str)], secs: u64) -> serde_json::Value {
        wait_for(
            &format!("{alertname} {labels:?} firing at the webhook"),
            Duration::from_secs(secs),
            || {
                self.alerts().into_iter().find(|a| {
                    a["labels"]["alertname"] == alertname
                        && a["status"] == "firing"
                        && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
                })
            },
        )
    }
}

fn read_webhook(mut stream: std::net::TcpStream) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut len = 0;
    let mut first = String::new();
    r.read_line(&mut first).ok()?;
    // Every header line, bounded: a request has a handful.
    for _ in 0..100 {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .ok()?;
    Some(body)
}

/// Where the cgroup v1 memory controller is mounted on CI's machines.
pub const V1_MEMORY: &str = "/sys/fs/cgroup/memory";

/// The memory limit of a [`MemCgroup`] made by [`MemCgroup::new`].
pub const MEM_CGROUP_LIMIT: u64 = 64 << 20;

/// A cgroup v1 memory cgroup made for one test (the OOM and pressure
/// tests), with a [`MEM_CGROUP_LIMIT`] limit, removed when dropped.
pub struct MemCgroup {
    pub dir: PathBuf,
}

impl MemCgroup {
    /// Makes one; panics saying what is missing (root, the controller).
    pub fn new(tag: &str) -> MemCgroup {
        MemCgroup::try_new(tag).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Makes one, or says why it cannot (not root, no v1 memory
    /// controller), for tests that skip without one.
    pub fn try_new(tag: &str) -> Result<MemCgroup, String> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(format!(
                "this test needs root, to make a memory cgroup under {V1_MEMORY}"
            ));
        }
        if !Path::new(V1_MEMORY).join("memory.limit_in_bytes").exists() {
            return Err(format!(
                "this test needs the cgroup v1 memory controller mounted at {V1_MEMORY}"
            ));
        }
        use std::hash::{BuildHasher, RandomState};
        let suffix = RandomState::new().hash_one(std::time::SystemTime::now());
        let dir = Path::new(V1_MEMORY).join(format!(
            "plumb-test-{tag}-{}-{suffix:x}",
            std::process::id(),
        ));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cg = MemCgroup { dir };
        std::fs::write(
            cg.dir.join("memory.limit_in_bytes"),
            MEM_CGROUP_LIMIT.to_string(),
        )
        .map_err(|e| format!("setting {}'s limit: {e}", cg.dir.display()))?;
        Ok(cg)
    }

    /// `sh -c` running `plumb ARGS` inside this cgroup, with `home`'s store.
    pub fn plumb(&self, home: &Home, args: &[&str]) -> Command {
        // The environment Home::cmd gives plumb, on a shell that
        // joins the cgroup and then becomes plumb.
        let plumb = home.cmd(&[]);
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(r#"echo $$ > "$1/cgroup.procs" && shift && exec "$@""#)
            .arg("sh")
            .arg(&self.dir)
            .arg(PLUMB)
            .args(args);
        for (k, v) in plumb.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        sh.current_dir(home.dir()).stdin(Stdio::null());
        sh
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // Kill whatever is still in it (a stressor a failed test left),
        // then remove it; the kernel may take a moment to let go.
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill has no memory preconditions; these pids are
                // the test's own cgroup's processes.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove the test cgroup {}", self.dir.display());
    }
}
