//! Steady-state probes: one check of one probe gives a [`Check`].

use crate::scenario::{LogSource, Probe, ProbeKind};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One check of one probe.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    /// The probe's name.
    pub probe: String,
    /// When it started (UTC, RFC 3339).
    pub at: String,
    /// When it started (UTC nanoseconds), for ordering.
    #[serde(skip)]
    pub at_ns: i64,
    /// Whether the steady state held for it.
    pub ok: bool,
    /// What it saw, in words.
    pub detail: String,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
}

/// Where a log probe's text is, and from which byte it counts.
#[derive(Debug, Clone)]
pub struct LogPlace {
    /// The file.
    pub path: PathBuf,
    /// Where the last check stopped reading (at first, the file's length
    /// when the scenario began): "must not appear" looks only at what was
    /// written since the probe's previous check, so a fault's error lines
    /// do not fail the checks after it. Shared by every check of the probe.
    pub from: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Runs one check of `p`. `log` is where its log lives (log probes only),
/// `cwd` where commands run.
pub fn check(p: &Probe, log: Option<&LogPlace>, cwd: &Path) -> Check {
    let now = plumb_model::Timestamp::now();
    let t0 = Instant::now();
    let (ok, detail) = match &p.kind {
        ProbeKind::Http {
            url,
            status,
            max_latency,
        } => match http_get(url, p.timeout) {
            Ok(got) => {
                let took = t0.elapsed();
                if got != *status {
                    (false, format!("status {got}, expected {status}"))
                } else if let Some(max) = max_latency
                    && took > *max
                {
                    (
                        false,
                        format!(
                            "status {got} in {} (over {})",
                            crate::scenario::human(took),
                            crate::scenario::human(*max)
                        ),
                    )
                } else {
                    (
                        true,
                        format!("status {got} in {}", crate::scenario::human(took)),
                    )
                }
            }
            Err(e) => (false, e),
        },
        ProbeKind::Command { argv, exit } => command(argv, *exit, p.timeout, cwd),
        ProbeKind::Metric {
            url,
            name,
            labels,
            min,
            max,
        } => match http_request("GET", url, p.timeout, None) {
            Ok((200, body)) => match sum_series(&body, name, labels) {
                None => (false, format!("no metric {name} at {url}")),
                Some(v) if min.is_some_and(|m| v < m) => (
                    false,
                    format!("{name} = {v} (under {})", min.unwrap_or_default()),
                ),
                Some(v) if max.is_some_and(|m| v > m) => (
                    false,
                    format!("{name} = {v} (over {})", max.unwrap_or_default()),
                ),
                Some(v) => (true, format!("{name} = {v}")),
            },
            Ok((status, _)) => (false, format!("{url} answered {status}")),
            Err(e) => (false, e),
        },
        ProbeKind::Log {
            pattern,
            present,
            source,
        } => match log {
            Some(place) => log_check(place, pattern, *present),
            None => (
                false,
                match source {
                    LogSource::File(f) => format!("{} cannot be read", f.display()),
                    LogSource::Target(t) => format!("target `{t}` has no output yet"),
                },
            ),
        },
    };
    Check {
        probe: p.name.clone(),
        at: now.to_rfc3339(),
        at_ns: now.as_nanos(),
        ok,
        detail,
        latency_ms: t0.elapsed().as_secs_f64() * 1000.0,
    }
}

/// A GET over HTTP/1.0; returns the status, or what went wrong.
fn http_get(url: &str, timeout: Duration) -> Result<u16, String> {
    http_request("GET", url, timeout, None).map(|(status, _)| status)
}

/// Whether `url` can be asked: http:// or https:// with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let config = plumb_http::Config::new(url).service("probe");
    plumb_http::Client::new(&config)
        .map(|_| ())
        .map_err(|_| format!("{url:?} is not an http:// or https:// URL with a host"))
}

/// One request through plumb's HTTP client (http:// or https://, verified
/// against the Mozilla roots or the private CA in `PLUMB_CA_CERT`; the
/// environment's proxies apply, as they do for chaostoolkit's requests);
/// returns the status and the body, or what went wrong. plumb's own token
/// is never sent: the server is the application under test.
pub fn http_request(
    method: &str,
    url: &str,
    timeout: Duration,
    body: Option<&[u8]>,
) -> Result<(u16, String), String> {
    let mut config = plumb_http::Config::new(url).service("probe");
    config.timeout = timeout;
    config.ca_cert = std::env::var_os("PLUMB_CA_CERT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    config.max_body = 1 << 20;
    let client = plumb_http::Client::new(&config).map_err(|e| e.to_string())?;
    let method = plumb_http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let mut req = client.request(method, "");
    if let Some(b) = body {
        req = req.bytes("application/json", b.to_vec());
    }
    match req.send_any() {
        Ok(r) => Ok((r.status, String::from_utf8_lossy(&r.body).into_owned())),
        Err(plumb_http::Error::Transport { message, .. }) if message.starts_with("timed out") => {
            Err(format!(
                "no complete answer within {}",
                crate::scenario::human(timeout)
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn command(argv: &[String], want: i32, timeout: Duration, cwd: &Path) -> (bool, String) {
    let out = std::env::temp_dir().join(format!(
        "plumb-chaos-probe-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let file = match std::fs::File::create(&out) {
        Ok(f) => f,
        Err(e) => return (false, format!("cannot create {}: {e}", out.display())),
    };
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(file.try_clone().map(Stdio::from).unwrap_or(Stdio::null()))
        .stderr(Stdio::from(file))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&out);
            return (false, format!("cannot run {}: {e}", argv[0]));
        }
    };
    let until = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let said = if last.is_empty() {
        String::new()
    } else {
        format!(": {last}")
    };
    match status {
        None => (
            false,
            format!("did not finish within {}", crate::scenario::human(timeout)),
        ),
        Some(s) => match s.code() {
            Some(c) if c == want => (true, format!("exit {c}{said}")),
            Some(c) => (false, format!("exit {c}, expected {want}{said}")),
            None => (false, format!("killed by a signal{said}")),
        },
    }
}

fn log_check(place: &LogPlace, pattern: &regex::Regex, present: bool) -> (bool, String) {
    let Ok(mut f) = std::fs::File::open(&place.path) else {
        return if present {
            (false, format!("{} does not exist", place.path.display()))
        } else {
            (true, format!("{} does not exist", place.path.display()))
        };
    };
    let mut text = Vec::new();
    let from = place.from.load(std::sync::atomic::Ordering::Relaxed);
    if !present {
        use std::io::Seek;
        let _ = f.seek(std::io::SeekFrom::Start(from));
    }
    let _ = (&mut f).take(64 << 20).read_to_end(&mut text);
    if !present {
        // Only whole lines are consumed: a line being written is read again.
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        text.truncate(whole);
        place
            .from
            .store(from + whole as u64, std::sync::atomic::Ordering::Relaxed);
    }
    let text = String::from_utf8_lossy(&text);
    let hit = text.lines().find(|l| pattern.is_match(l));
    match (hit, present) {
        (Some(l), true) => (true, format!("found: {}", l.trim())),
        (None, true) => (false, format!("`{}` not found", pattern.as_str())),
        (Some(l), false) => (false, format!("appeared: {}", l.trim())),
        (None, false) => (true, format!("`{}` absent", pattern.as_str())),
    }
}

/// The sum of the samples of `name` whose labels include `labels`, from
/// Prometheus text (0 when the metric is there but no sample has those
/// labels: a counter not yet incremented); None when the text has no
/// metric of that name at all (a `# TYPE` line or a sample), as a typo.
pub fn sum_series(text: &str, name: &str, labels: &[(String, String)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().map(str::trim) {
        if let Some(meta) = line.strip_prefix('#') {
            let mut words = meta.split_whitespace();
            if matches!(words.next(), Some("TYPE" | "HELP")) && words.next() == Some(name) {
                sum = sum.or(Some(0.0));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let (key, rest) = match line.find('{') {
            Some(i) if line[..i] == *name => match line.rfind('}') {
                Some(close) => (&line[i + 1..close], &line[close + 1..]),
                None => continue,
            },
            Some(_) => continue,
            None => match line.split_once(char::is_whitespace) {
                Some((n, rest)) if n == name => ("", rest),
                _ => continue,
            },
        };
        let has = |k: &str, v: &str| {
            key.split(',').any(|kv| {
                kv.split_once('=')
                    .is_some_and(|(a, b)| a.trim() == k && b.trim().trim_matches('"') == v)
            })
        };
        sum = sum.or(Some(0.0));
        if !labels.iter().all(|(k, v)| has(k, v)) {
            continue;
        }
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            sum = Some(sum.unwrap_or(0.0) + v);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_over_the_labels_not_given() {
        let text = "# TYPE r counter\nr{path=\"/a\",code=\"200\"} 3\nr{path=\"/b\",code=\"500\"} 2\nrr 9\nr_total 1\n";
        assert_eq!(sum_series(text, "r", &[]), Some(5.0));
        assert_eq!(
            sum_series(text, "r", &[("code".into(), "500".into())]),
            Some(2.0)
        );
        assert_eq!(sum_series(text, "rr", &[]), Some(9.0));
        assert_eq!(sum_series(text, "nope", &[]), None);
        // Known by its TYPE line or another sample: no matching sample is 0.
        assert_eq!(
            sum_series(text, "r", &[("code".into(), "502".into())]),
            Some(0.0)
        );
        assert_eq!(sum_series("# TYPE q counter\n", "q", &[]), Some(0.0));
    }
}
