//! Shared fixtures of the shipping and agent tests: a real `plumb serve`
//! child on a fixed loopback port (so it can be killed and restarted at the
//! same address), real `plumb agent` and `plumb run` children.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PLUMB: &str = env!("CARGO_BIN_EXE_plumb");

/// A free loopback port (free now; the collector binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `plumb serve` child, killed on drop.
pub struct Serve {
    pub child: Child,
    pub url: String,
}

impl Serve {
    pub fn start(data: &Path, port: u16) -> Serve {
        Serve::start_with(data, port, &[])
    }

    /// [`Serve::start`] with more `plumb serve` flags.
    pub fn start_with(data: &Path, port: u16, extra: &[&str]) -> Serve {
        let mut child = Command::new(PLUMB)
            .args(["serve", "--otlp-listen", "off", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .arg("--data")
            .arg(data)
            .env("PLUMB_HOME", data)
            .env_remove("PLUMB_COLLECTOR")
            .env_remove("PLUMB_CONFIG")
            .env_remove("PLUMB_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("plumb serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("api"),
            "unexpected plumb serve output {line:?}"
        );
        let url = format!("http://127.0.0.1:{port}");
        let s = Serve { child, url };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if get(&self.url, "/readyz").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("collector at {} never became ready", self.url);
    }

    pub fn kill9(&mut self) {
        signal(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill with a pid we spawned.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A GET with a short timeout; `None` unless it answers 2xx.
pub fn get(base: &str, path: &str) -> Option<String> {
    let client = plumb_ship::Client::new(&plumb_ship::ClientConfig {
        collector: base.to_string(),
        token: None,
        ca_cert: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    client.get(path).ok().map(|r| r.body)
}

/// A `plumb` command with an isolated home.
pub fn plumb(home: &Path) -> Command {
    let mut c = Command::new(PLUMB);
    c.env("PLUMB_HOME", home)
        .env_remove("PLUMB_COLLECTOR")
        .env_remove("PLUMB_CONFIG")
        .env_remove("PLUMB_TOKEN")
        .env_remove("PLUMB_OUTBOX")
        .env_remove("PLUMB_SPOOL")
        .env_remove("PLUMB_SPOOL_MAX")
        .current_dir(home);
    c
}

/// Spool files waiting in an outbox.
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

/// Polls `f` every 100 ms until it is true or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stdout a collector stored for a run, byte for byte.
pub fn stored_stdout(data: &Path, run: &str) -> Option<Vec<u8>> {
    let store = plumb_store::Store::open_read_only(data).ok()?;
    let id = plumb_model::Uuid::parse_str(run.trim()).ok()?;
    store.get_run(id).ok()?;
    let mut out = Vec::new();
    let mut cursor = plumb_store::OutputCursor::default();
    store
        .replay_output(id, Some(plumb_model::Stream::Stdout), &mut cursor, |p| {
            out.extend_from_slice(p.bytes());
            Ok(())
        })
        .ok()?;
    Some(out)
}

/// Whether the collector holds the run as ended.
pub fn stored_ended(data: &Path, run: &str) -> bool {
    let Ok(store) = plumb_store::Store::open_read_only(data) else {
        return false;
    };
    let Ok(id) = plumb_model::Uuid::parse_str(run.trim()) else {
        return false;
    };
    store.get_run(id).is_ok_and(|r| r.ended.is_some())
}
