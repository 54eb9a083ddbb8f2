//! Delivery: webhooks (a JSON POST of Alertmanager's payload) and commands
//! (the same JSON on stdin), off the evaluation path. Evaluation hands
//! payloads over with `try_send` on a bounded channel and never waits;
//! each delivery runs on a blocking thread, retried with bounded
//! exponential backoff, at most a few at a time. Each webhook has one HTTP
//! client for all its deliveries, so connections are reused.

use super::config::{Dur, ExecConfig, WebhookConfig};
use plumb_model::alerts::WebhookPayload;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attempts per delivery (the first included).
const ATTEMPTS: u32 = 5;
/// The wait before the second attempt (0.5 s), doubling up to 8 s: the
/// ceilings of the one backoff schedule, without jitter, since a handful
/// of receivers cannot stampede anyone.
const BACKOFF: plumb_http::Backoff = plumb_http::Backoff {
    base: Duration::from_millis(500),
    cap: Duration::from_secs(8),
};
/// Deliveries in flight at once.
const CONCURRENCY: usize = 4;
/// Payloads waiting for delivery; beyond this they are dropped and counted.
pub const QUEUE: usize = 256;

/// Labels of the notification counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `webhook` or `exec`.
    pub receiver: String,
    /// `sent`, `failed` (after every retry) or `dropped` (queue full).
    pub outcome: String,
}

/// One webhook and the client that posts to it.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its settings.
    pub config: WebhookConfig,
    client: plumb_http::Client,
}

impl Webhook {
    /// A webhook with its own client; fails on a URL that is not http(s).
    pub fn new(config: WebhookConfig) -> Result<Webhook, plumb_http::Error> {
        let client = plumb_http::Client::new(&plumb_http::Config {
            timeout: config.timeout.0,
            ..plumb_http::Config::new(config.url.clone()).service("webhook")
        })?;
        Ok(Webhook { config, client })
    }
}

/// Where payloads go.
#[derive(Debug, Clone)]
pub struct Receivers {
    /// Webhooks.
    pub webhooks: Vec<Webhook>,
    /// Commands.
    pub execs: Vec<ExecConfig>,
    /// Outcome counter.
    pub counter: Family<OutcomeLabels, Counter>,
}

impl Receivers {
    fn count(&self, receiver: &str, outcome: &str) {
        self.counter
            .get_or_create(&OutcomeLabels {
                receiver: receiver.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Whether there is anywhere to send to.
    pub fn any(&self) -> bool {
        !self.webhooks.is_empty() || !self.execs.is_empty()
    }

    /// Hands `payloads` to the delivery task without waiting; counts what
    /// did not fit.
    pub fn enqueue(
        &self,
        tx: &tokio::sync::mpsc::Sender<WebhookPayload>,
        payloads: Vec<WebhookPayload>,
    ) {
        for p in payloads {
            if tx.try_send(p).is_err() {
                tracing::warn!("alert delivery queue full: a notification was dropped");
                self.count("queue", "dropped");
            }
        }
    }
}

/// Delivers every payload received to every receiver until the channel
/// closes.
pub async fn run(receivers: Receivers, mut rx: tokio::sync::mpsc::Receiver<WebhookPayload>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let receivers = Arc::new(receivers);
    while let Some(payload) = rx.recv().await {
        for i in 0..receivers.webhooks.len() {
            let mut p = payload.clone();
            p.receiver = format!("webhook-{i}");
            spawn_one(&permits, &receivers, move |r| {
                let w = &r.webhooks[i];
                let out = post(w, &p);
                ("webhook", w.config.url.clone(), out)
            })
            .await;
        }
        for i in 0..receivers.execs.len() {
            let mut p = payload.clone();
            p.receiver = format!("exec-{i}");
            spawn_one(&permits, &receivers, move |r| {
                let e = &r.execs[i];
                let out = exec(e, &p);
                ("exec", e.command.clone(), out)
            })
            .await;
        }
    }
}

async fn spawn_one(
    permits: &Arc<tokio::sync::Semaphore>,
    receivers: &Arc<Receivers>,
    attempt: impl Fn(&Receivers) -> (&'static str, String, Result<(), String>) + Send + 'static,
) {
    let Ok(permit) = permits.clone().acquire_owned().await else {
        return;
    };
    let r = receivers.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        for n in 1..=ATTEMPTS {
            let (kind, target, result) = attempt(&r);
            match result {
                Ok(()) => {
                    r.count(kind, "sent");
                    return;
                }
                Err(e) if n == ATTEMPTS => {
                    tracing::warn!(receiver = kind, %target, error = %e, attempts = n, "alert notification failed; giving up");
                    r.count(kind, "failed");
                }
                Err(e) => {
                    tracing::info!(receiver = kind, %target, error = %e, attempt = n, "alert notification failed; retrying");
                    std::thread::sleep(BACKOFF.ceiling(n - 1));
                }
            }
        }
    });
}

fn post(w: &Webhook, p: &WebhookPayload) -> Result<(), String> {
    w.client
        .post("")
        .json(p)
        .send()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Runs the command with `sh -c`, the payload on stdin and `PLUMB_ALERT_*`
/// variables; kills its whole process group after its timeout.
fn exec(e: &ExecConfig, p: &WebhookPayload) -> Result<(), String> {
    let body = serde_json::to_vec(p).expect("payload serializes");
    let names: Vec<&str> = p
        .alerts
        .iter()
        .filter_map(|a| a.labels.get("alertname").map(String::as_str))
        .collect();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&e.command)
        .env("PLUMB_ALERT_STATUS", &p.status)
        .env("PLUMB_ALERT_COUNT", p.alerts.len().to_string())
        .env("PLUMB_ALERT_NAMES", names.join(","))
        .env("PLUMB_ALERT_GROUP", &p.group_key)
        .env(
            "PLUMB_ALERT_SUMMARY",
            p.alerts
                .iter()
                .map(|a| a.annotations.get("summary").cloned().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("; "),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        // Its own process group, so a timeout reaches whatever the command
        // started (a mailer's children, `cmd &`), not just `sh`.
        .process_group(0)
        .spawn()
        .map_err(|err| format!("cannot start `sh -c {}`: {err}", e.command))?;
    if let Some(mut stdin) = child.stdin.take() {
        // On its own thread: a command that neither reads its stdin nor
        // exits would otherwise block this write past the timeout once the
        // payload outgrows the pipe. A broken pipe (a command that does not
        // read its stdin) is not a failure of the notification.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
    }
    wait_with_timeout(&mut child, e.timeout)
}

fn wait_with_timeout(child: &mut std::process::Child, timeout: Dur) -> Result<(), String> {
    let deadline = Instant::now() + timeout.0;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the command ended with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(child);
                let _ = child.wait();
                return Err(format!(
                    "the command ran longer than {:?} and was killed",
                    timeout.0
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(err) => return Err(format!("cannot wait for the command: {err}")),
        }
    }
}

/// SIGKILLs the process group `child` leads. The child is not reaped yet,
/// so its pid (the group's id) cannot have been reused.
fn kill_group(child: &mut std::process::Child) {
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        let _ = child.kill();
        return;
    };
    // SAFETY: kill(2) with a negative pid signals that process group; it
    // touches no memory of ours.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        let _ = child.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Whether `pid` is gone (or a zombie waiting for whoever adopted it).
    fn gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn a_timed_out_command_is_killed_with_the_processes_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let e = ExecConfig {
            // The grandchild outlives sh unless the whole group is killed.
            command: format!("sleep 300 & echo $! > {}; wait", pidfile.display()),
            timeout: Dur(Duration::from_millis(500)),
        };
        let p = WebhookPayload::new("", "http://127.0.0.1:1", BTreeMap::new(), &[]);
        let err = exec(&e, &p).unwrap_err();
        assert!(err.contains("was killed"), "{err}");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid = pid.trim();
        assert!(pid.parse::<u32>().is_ok(), "{pid:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            gone(pid),
            "the grandchild `sleep 300` (pid {pid}) survived the timeout"
        );
    }

    #[test]
    fn a_command_that_ignores_a_large_payload_still_times_out() {
        // More than a pipe holds, to a command that never reads it.
        let e = ExecConfig {
            command: "sleep 300".into(),
            timeout: Dur(Duration::from_millis(300)),
        };
        let mut p = WebhookPayload::new("", "http://127.0.0.1:1", BTreeMap::new(), &[]);
        // Not in a variable: only the JSON on stdin grows.
        p.common_annotations
            .insert("bulk".into(), "x".repeat(1 << 20));
        let started = Instant::now();
        let err = exec(&e, &p).unwrap_err();
        assert!(err.contains("was killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(60), "exec returned");
    }
}
