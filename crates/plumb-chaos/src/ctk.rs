//! chaostoolkit experiments (JSON), run as chaostoolkit runs them:
//! the steady-state hypothesis's probes in order (the first one out of
//! tolerance ends the check), the method's activities one after the other
//! with their pauses, the hypothesis again, then the rollbacks (always).
//!
//! Only `process` and `http` providers run; every other activity (a
//! `python` provider, a tolerance of a kind not handled) is named, all at
//! once, before anything runs. `{"ref": NAME}` runs the method's or the
//! hypothesis's activity of that name; `${name}` in arguments, URLs,
//! timeouts and pauses takes the experiment's `configuration` and
//! `secrets` (plain values and environment variables). Tolerances follow chaoslib's
//! `within_tolerance`: an integer is the exit code or HTTP status; a list
//! is a set of them; `{"type": "regex", "pattern", "target"}` searches
//! stdout, stderr or body; `{"type": "range", "range": [lo, hi], "target"}`
//! bounds a number; a string or a boolean compares with the whole result,
//! which for these providers never matches, as in chaostoolkit.

use crate::probe::{Check, http_request};
use crate::report::{FaultReport, Report};
use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Its title.
    pub title: String,
    /// The steady-state hypothesis's probes.
    pub hypothesis: Vec<Activity>,
    /// The method.
    pub method: Vec<Activity>,
    /// The rollbacks.
    pub rollbacks: Vec<Activity>,
    base: PathBuf,
}

/// One activity (probe or action).
#[derive(Debug, Clone)]
pub struct Activity {
    /// Its name.
    pub name: String,
    /// `probe` or `action`.
    pub kind: String,
    provider: Provider,
    tolerance: Option<Tolerance>,
    pause_before: f64,
    pause_after: f64,
}

#[derive(Debug, Clone)]
enum Provider {
    Process {
        path: String,
        /// None: a string of arguments, run through the shell.
        args: Result<Vec<String>, String>,
        timeout: Option<f64>,
    },
    Http {
        url: String,
        method: String,
        timeout: f64,
        body: Option<String>,
    },
}

#[derive(Debug, Clone)]
enum Tolerance {
    Int(i64),
    List(Vec<Value>),
    Never,
    Regex(regex::Regex, Option<String>),
    Range(f64, f64, Option<String>),
}

/// Whether `path` holds a chaostoolkit experiment: a JSON or YAML file
/// whose top level has a `method` (chaostoolkit requires one; plumb's own
/// scenario format, which may also be written as JSON or YAML, has none).
/// A file that cannot be read or parsed is not one: plumb's own loader then
/// names what is wrong with it.
pub fn is_experiment(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let v: Option<Value> = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).ok(),
        Some("yaml" | "yml") => yaml_serde::from_str(&text).ok(),
        _ => None,
    };
    match v {
        Some(v) => v.get("method").is_some(),
        // Broken: chaostoolkit's if it says `method` at its top level, so
        // the error is about the experiment it was meant to be.
        None => text
            .lines()
            .any(|l| l.starts_with("method:") || l.trim_start().starts_with("\"method\"")),
    }
}

/// Reads and validates an experiment; every activity plumb cannot run is
/// named in one error.
pub fn load(path: &Path) -> Result<Experiment> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read experiment {}: {e}", path.display()))?;
    // chaostoolkit reads either; so does plumb, into the same value.
    let v: Value = if ext == "yaml" || ext == "yml" {
        yaml_serde::from_str(&text).map_err(|e| match e.location() {
            Some(at) => anyhow!("{}:{}: {e}", path.display(), at.line()),
            None => anyhow!("{}: {e}", path.display()),
        })?
    } else {
        serde_json::from_str(&text).map_err(|e| anyhow!("{}:{}: {e}", path.display(), e.line()))?
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&v, base).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn parse(v: &Value, base: PathBuf) -> Result<Experiment> {
    let title = v["title"].as_str().unwrap_or("experiment").to_string();
    let mut refused = Vec::new();
    // `${name}` values: the configuration first, then every secret scope,
    // read once at the start (environment variables included), as
    // chaostoolkit does.
    let mut values = serde_json::Map::new();
    if let Some(c) = v["configuration"].as_object() {
        for (k, x) in c {
            match value_of(x) {
                Ok(x) => {
                    values.insert(k.clone(), x);
                }
                Err(why) => refused.push(format!("configuration.{k}: {why}")),
            }
        }
    }
    if let Some(scopes) = v["secrets"].as_object() {
        for (scope, keys) in scopes {
            for (k, x) in keys.as_object().into_iter().flatten() {
                match value_of(x) {
                    Ok(x) => {
                        values.entry(k.clone()).or_insert(x);
                    }
                    Err(why) => refused.push(format!("secrets.{scope}.{k}: {why}")),
                }
            }
        }
    }
    // What a `{"ref": NAME}` stands for: the method's activities, then the
    // hypothesis's probes (a later one of the same name wins).
    let mut named: std::collections::HashMap<&str, &Value> = std::collections::HashMap::new();
    for a in v["method"].as_array().into_iter().flatten().chain(
        v["steady-state-hypothesis"]["probes"]
            .as_array()
            .into_iter()
            .flatten(),
    ) {
        if let Some(n) = a["name"].as_str().filter(|n| !n.is_empty()) {
            named.insert(n, a);
        }
    }
    let mut list = |key: &str, items: Option<&Vec<Value>>| -> Vec<Activity> {
        let mut out = Vec::new();
        for (i, a) in items.into_iter().flatten().enumerate() {
            let a = match a["ref"].as_str() {
                Some(r) => match named.get(r) {
                    Some(x) => *x,
                    None => {
                        refused.push(format!(
                            "{key}[{i}] a reference to '{r}', which no activity of the method or the hypothesis is named"
                        ));
                        continue;
                    }
                },
                None => a,
            };
            match activity(a, &values) {
                Ok(act) => out.push(act),
                Err(why) => refused.push(format!("{key}[{i}] {why}")),
            }
        }
        out
    };
    let hyp = &v["steady-state-hypothesis"];
    let hypothesis = list("steady-state-hypothesis.probes", hyp["probes"].as_array());
    let method = list("method", v["method"].as_array());
    let rollbacks = list("rollbacks", v["rollbacks"].as_array());
    if !refused.is_empty() {
        bail!(
            "plumb cannot run these activities (nothing was run):\n  {}",
            refused.join("\n  ")
        );
    }
    if method.is_empty() {
        bail!("the experiment has no method: nothing would be tested");
    }
    Ok(Experiment {
        title,
        hypothesis,
        method,
        rollbacks,
        base,
    })
}

/// A configuration or secret value: as given, or `{"type": "env", "key":
/// VAR[, "default": X][, "env_var_type": "int"|"float"|"str"]}`.
fn value_of(x: &Value) -> Result<Value, String> {
    let Some(kind) = x.get("type") else {
        return Ok(x.clone());
    };
    if kind != "env" {
        return Err(format!(
            "a value of type {kind}: plumb reads plain values and environment variables (type env)"
        ));
    }
    let var = x["key"]
        .as_str()
        .ok_or("an env value needs the variable's name as `key`")?;
    let raw = match (std::env::var(var), x.get("default")) {
        (Ok(v), _) => v,
        (Err(_), Some(d)) => return Ok(d.clone()),
        (Err(_), None) => {
            return Err(format!(
                "the environment variable {var} is not set, and there is no default"
            ));
        }
    };
    Ok(match x["env_var_type"].as_str() {
        None | Some("str") => Value::String(raw),
        Some("int") => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|e| format!("{var}={raw:?} is not an int: {e}"))?,
        Some("float") => raw
            .trim()
            .parse::<f64>()
            .map(Value::from)
            .map_err(|e| format!("{var}={raw:?} is not a float: {e}"))?,
        Some(other) => return Err(format!("env_var_type {other:?} is not handled")),
    })
}

/// chaostoolkit's `${name}` substitution into strings, recursively: a
/// string that is one whole `${name}` (or `$name`) becomes the value with
/// its type; elsewhere values are written in as Python writes them, `$$`
/// is a `$`, and an unknown name stays as written.
fn substitute(x: &Value, values: &serde_json::Map<String, Value>) -> Value {
    match x {
        Value::String(s) => substitute_str(s, values),
        Value::Array(xs) => Value::Array(xs.iter().map(|x| substitute(x, values)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute(x, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn substitute_str(s: &str, values: &serde_json::Map<String, Value>) -> Value {
    // (start, end, name) of each `$name` / `${name}`; `$$` as name "$".
    let b = s.as_bytes();
    let ident = |i: usize| {
        let mut j = i;
        while j < b.len() && (b[j] == b'_' || b[j].is_ascii_alphanumeric()) {
            if j == i && b[j].is_ascii_digit() {
                break;
            }
            j += 1;
        }
        j
    };
    let mut out = String::new();
    let (mut i, mut last) = (0, 0);
    let mut whole = None;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let (name, end) = if b.get(i + 1) == Some(&b'$') {
            ("$", i + 2)
        } else if b.get(i + 1) == Some(&b'{') {
            let j = ident(i + 2);
            if j > i + 2 && b.get(j) == Some(&b'}') {
                (&s[i + 2..j], j + 1)
            } else {
                i += 1;
                continue;
            }
        } else {
            let j = ident(i + 1);
            if j > i + 1 {
                (&s[i + 1..j], j)
            } else {
                i += 1;
                continue;
            }
        };
        if i == 0 && end == s.len() && name != "$" {
            whole = Some(name);
        }
        out.push_str(&s[last..i]);
        match (name, values.get(name)) {
            ("$", _) => out.push('$'),
            (_, Some(v)) => out.push_str(&python_str(v)),
            (_, None) => out.push_str(&s[i..end]),
        }
        last = end;
        i = end;
    }
    if let Some(v) = whole.and_then(|n| values.get(n)) {
        return v.clone();
    }
    out.push_str(&s[last..]);
    Value::String(out)
}

/// A value as Python's `str()` writes it.
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e16 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        other => other.to_string(),
    }
}

fn activity(a: &Value, values: &serde_json::Map<String, Value>) -> Result<Activity, String> {
    let name = a["name"].as_str().unwrap_or("").to_string();
    let label = if name.is_empty() {
        "(no name)".to_string()
    } else {
        format!("'{name}'")
    };
    // What chaostoolkit substitutes: a process's arguments, an http
    // provider's url, timeout and arguments, and the pauses.
    let mut a = a.clone();
    for key in ["arguments", "url", "timeout"] {
        if let Some(x) = a["provider"].get(key).cloned() {
            a["provider"][key] = substitute(&x, values);
        }
    }
    if let Some(x) = a.get("pauses").cloned() {
        a["pauses"] = substitute(&x, values);
    }
    let a = &a;
    let kind = a["type"].as_str().unwrap_or("").to_string();
    if kind != "probe" && kind != "action" {
        return Err(format!(
            "{label}: type {:?} is not probe or action",
            a["type"]
        ));
    }
    let p = &a["provider"];
    let provider = match p["type"].as_str() {
        Some("process") => {
            let path = p["path"]
                .as_str()
                .ok_or_else(|| format!("{label}: a process provider needs a path"))?
                .to_string();
            let args = match &p["arguments"] {
                Value::Null => Ok(Vec::new()),
                Value::String(s) => Err(s.clone()),
                Value::Array(xs) => Ok(xs
                    .iter()
                    .filter(|x| !x.is_null() && x.as_str() != Some(""))
                    .map(|x| match x {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()),
                _ => return Err(format!("{label}: arguments as a mapping are not handled")),
            };
            Provider::Process {
                path,
                args,
                timeout: p["timeout"].as_f64(),
            }
        }
        Some("http") => {
            let url = p["url"]
                .as_str()
                .ok_or_else(|| format!("{label}: an http provider needs a url"))?
                .to_string();
            crate::probe::check_url(&url).map_err(|e| format!("{label}: {e}"))?;
            Provider::Http {
                url,
                method: p["method"].as_str().unwrap_or("GET").to_uppercase(),
                timeout: p["timeout"].as_f64().unwrap_or(30.0),
                body: match &p["arguments"] {
                    Value::Null => None,
                    other => Some(other.to_string()),
                },
            }
        }
        Some("python") => {
            return Err(format!(
                "{label}: a python provider ({}.{}): plumb runs process and http activities only",
                p["module"].as_str().unwrap_or("?"),
                p["func"].as_str().unwrap_or("?")
            ));
        }
        other => return Err(format!("{label}: provider type {other:?} is not handled")),
    };
    let tolerance = match &a["tolerance"] {
        Value::Null if kind == "action" => None,
        Value::Null => return Err(format!("{label}: a hypothesis probe needs a tolerance")),
        t => Some(tolerance(t).map_err(|e| format!("{label}: {e}"))?),
    };
    let pause = |k: &str| a["pauses"][k].as_f64().unwrap_or(0.0);
    Ok(Activity {
        name,
        kind,
        provider,
        tolerance,
        pause_before: pause("before"),
        pause_after: pause("after"),
    })
}

fn tolerance(t: &Value) -> Result<Tolerance, String> {
    Ok(match t {
        Value::Number(n) if n.is_i64() => Tolerance::Int(n.as_i64().unwrap_or(0)),
        Value::Array(xs) => Tolerance::List(xs.clone()),
        Value::Bool(_) | Value::String(_) => Tolerance::Never,
        Value::Object(o) => {
            let target = o.get("target").and_then(Value::as_str).map(str::to_string);
            match o.get("type").and_then(Value::as_str) {
                Some("regex") => {
                    let pat = o.get("pattern").and_then(Value::as_str).unwrap_or("");
                    Tolerance::Regex(
                        regex::Regex::new(pat).map_err(|e| format!("tolerance pattern: {e}"))?,
                        target,
                    )
                }
                Some("range") => {
                    let r = o
                        .get("range")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    match (
                        r.first().and_then(Value::as_f64),
                        r.get(1).and_then(Value::as_f64),
                    ) {
                        (Some(lo), Some(hi)) => Tolerance::Range(lo, hi, target),
                        _ => return Err("a range tolerance needs range = [low, high]".into()),
                    }
                }
                other => return Err(format!("a tolerance of type {other:?} is not handled")),
            }
        }
        other => return Err(format!("a tolerance {other} is not handled")),
    })
}

/// What one activity returned: chaostoolkit's result mapping.
#[derive(Debug, Default)]
struct Outcome {
    status: i64,
    stdout: String,
    stderr: String,
    body: String,
    failed: Option<String>,
}

fn perform(a: &Activity, base: &Path) -> Outcome {
    match &a.provider {
        Provider::Process {
            path,
            args,
            timeout,
        } => {
            let mut cmd = match args {
                Ok(list) => {
                    let mut c = Command::new(path);
                    c.args(list);
                    c
                }
                Err(line) => {
                    let mut c = Command::new("/bin/sh");
                    c.arg("-c").arg(format!("{path} {line}"));
                    c
                }
            };
            cmd.current_dir(base)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    return Outcome {
                        failed: Some(format!("cannot run {path}: {e}")),
                        ..Outcome::default()
                    };
                }
            };
            let until = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t));
            // Read both pipes on threads so a chatty child never blocks.
            let mut out = child.stdout.take();
            let mut err = child.stderr.take();
            let t_out = std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(o) = out.as_mut() {
                    let _ = std::io::Read::read_to_string(o, &mut s);
                }
                s
            });
            let t_err = std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(e) = err.as_mut() {
                    let _ = std::io::Read::read_to_string(e, &mut s);
                }
                s
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break Ok(s),
                    Ok(None) if until.is_none_or(|u| Instant::now() < u) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(());
                    }
                }
            };
            let stdout = t_out.join().unwrap_or_default();
            let stderr = t_err.join().unwrap_or_default();
            match status {
                Ok(s) => Outcome {
                    status: s.code().map(i64::from).unwrap_or(-1),
                    stdout,
                    stderr,
                    ..Outcome::default()
                },
                Err(()) => Outcome {
                    failed: Some("process activity took too long to complete".into()),
                    ..Outcome::default()
                },
            }
        }
        Provider::Http {
            url,
            method,
            timeout,
            body,
        } => match http_request(
            method,
            url,
            Duration::from_secs_f64(*timeout),
            body.as_deref().map(str::as_bytes),
        ) {
            Ok((status, text)) => Outcome {
                status: i64::from(status),
                body: text,
                ..Outcome::default()
            },
            Err(e) => Outcome {
                failed: Some(e),
                ..Outcome::default()
            },
        },
    }
}

impl Outcome {
    fn field(&self, target: Option<&str>) -> String {
        match target {
            Some("stdout") => self.stdout.clone(),
            Some("stderr") => self.stderr.clone(),
            Some("body") => self.body.clone(),
            _ => self.status.to_string(),
        }
    }

    fn describe(&self) -> String {
        if let Some(f) = &self.failed {
            return f.clone();
        }
        let mut s = format!("status {}", self.status);
        let last = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .rfind(|l| !l.trim().is_empty());
        if let Some(l) = last {
            s.push_str(&format!(": {}", l.trim()));
        }
        s
    }
}

fn met(t: &Tolerance, o: &Outcome) -> bool {
    if o.failed.is_some() {
        return false;
    }
    match t {
        Tolerance::Int(n) => o.status == *n,
        Tolerance::List(xs) => xs.iter().any(|x| x.as_i64() == Some(o.status)),
        Tolerance::Never => false,
        Tolerance::Regex(re, target) => re.is_match(&o.field(target.as_deref())),
        Tolerance::Range(lo, hi, target) => o
            .field(target.as_deref())
            .trim()
            .parse::<f64>()
            .is_ok_and(|v| *lo <= v && v <= *hi),
    }
}

fn check(a: &Activity, base: &Path) -> Check {
    let now = plumb_model::Timestamp::now();
    let t0 = Instant::now();
    let o = perform(a, base);
    let ok = a.tolerance.as_ref().is_some_and(|t| met(t, &o));
    Check {
        probe: a.name.clone(),
        at: now.to_rfc3339(),
        at_ns: now.as_nanos(),
        ok,
        detail: if ok {
            o.describe()
        } else {
            format!("{} (not within tolerance)", o.describe())
        },
        latency_ms: t0.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Checks the hypothesis as chaostoolkit does: in order, stopping at the
/// first probe out of tolerance.
fn hypothesis(e: &Experiment, progress: &mut dyn FnMut(&str), when: &str) -> Vec<Check> {
    let mut out = Vec::new();
    for a in &e.hypothesis {
        let c = check(a, &e.base);
        progress(&format!(
            "{when}: {} {}: {}",
            if c.ok { "ok" } else { "FAIL" },
            c.probe,
            c.detail
        ));
        let ok = c.ok;
        out.push(c);
        if !ok {
            break;
        }
    }
    out
}

fn pause(secs: f64, stop: &AtomicBool) {
    let until = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the experiment; the report has one fault entry per method
/// activity.
pub fn run(
    e: &Experiment,
    scenario: String,
    progress: &mut dyn FnMut(&str),
    stop: &AtomicBool,
) -> Report {
    let started = plumb_model::Timestamp::now();
    let before = hypothesis(e, progress, "before");
    let steady = before.iter().all(|c| c.ok);
    let mut faults = Vec::new();
    let mut after = Vec::new();
    let mut stopped = false;
    if steady {
        for a in &e.method {
            if stop.load(Ordering::Relaxed) {
                stopped = true;
                break;
            }
            pause(a.pause_before, stop);
            let t0 = plumb_model::Timestamp::now();
            let o = perform(a, &e.base);
            let t1 = plumb_model::Timestamp::now();
            progress(&format!("{} {}: {}", a.kind, a.name, o.describe()));
            faults.push(FaultReport {
                kind: a.kind.clone(),
                on: a.name.clone(),
                node: None,
                pids: Vec::new(),
                line: 0,
                planned_ms: 0,
                injected: Some(t0.to_rfc3339()),
                removed: Some(t1.to_rfc3339()),
                action: describe_provider(&a.provider),
                removal: o.describe(),
                error: None,
                before: Vec::new(),
                during: Vec::new(),
                after: Vec::new(),
                verdict: "done".into(),
                first_deviation: None,
                links: Vec::new(),
                injected_ns: t0.as_nanos(),
                removed_ns: t1.as_nanos(),
            });
            pause(a.pause_after, stop);
        }
        if !stopped {
            after = hypothesis(e, progress, "after");
        }
    } else {
        progress("the steady state does not hold before the method: it is not run");
    }
    let mut rollbacks = Vec::new();
    for a in &e.rollbacks {
        let o = perform(a, &e.base);
        rollbacks.push(format!("{}: {}", a.name, o.describe()));
    }
    let first_deviation = before.iter().chain(&after).find(|c| !c.ok).cloned();
    let held = steady && !stopped && first_deviation.is_none();
    let verdict = if !steady {
        "not steady before"
    } else if stopped {
        "stopped"
    } else if held {
        "held"
    } else {
        "deviated"
    };
    Report {
        title: e.title.clone(),
        scenario,
        seed: 0,
        started: started.to_rfc3339(),
        ended: plumb_model::Timestamp::now().to_rfc3339(),
        verdict: verdict.into(),
        held,
        first_deviation,
        before,
        during: Vec::new(),
        after,
        faults,
        targets: Vec::new(),
        links: Vec::new(),
        rollbacks,
        cleanup: Vec::new(),
        work_dir: e.base.display().to_string(),
    }
}

fn describe_provider(p: &Provider) -> String {
    match p {
        Provider::Process { path, args, .. } => match args {
            Ok(list) => format!("{path} {}", list.join(" ")),
            Err(line) => format!("{path} {line}"),
        },
        Provider::Http { url, method, .. } => format!("{method} {url}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_activity_plumb_cannot_run_is_named_at_once() {
        let v: Value = serde_json::from_str(
            r#"{"title": "t",
                "steady-state-hypothesis": {"title": "h", "probes": [
                  {"type": "probe", "name": "p", "tolerance": 0,
                   "provider": {"type": "python", "module": "chaosaws.ec2.probes", "func": "describe"}}]},
                "method": [
                  {"type": "action", "name": "a", "provider": {"type": "process", "path": "true"}},
                  {"ref": "p"}, {"ref": "q"}],
                "configuration": {"v": {"type": "vault", "key": "k"},
                                  "e": {"type": "env", "key": "PLUMB_TEST_NEVER_SET_VAR"}}}"#,
        )
        .unwrap();
        let e = parse(&v, PathBuf::from(".")).unwrap_err().to_string();
        assert!(e.contains("steady-state-hypothesis.probes[0] 'p': a python provider (chaosaws.ec2.probes.describe)"), "{e}");
        // A reference is what it refers to.
        assert!(e.contains("method[1] 'p': a python provider"), "{e}");
        assert!(
            e.contains("method[2] a reference to 'q', which no activity of the method or the hypothesis is named"),
            "{e}"
        );
        assert!(
            e.contains("configuration.v: a value of type \"vault\""),
            "{e}"
        );
        assert!(
            e.contains("configuration.e: the environment variable PLUMB_TEST_NEVER_SET_VAR is not set, and there is no default"),
            "{e}"
        );
    }

    #[test]
    fn substitution_follows_chaostoolkit_typed_whole_values_and_python_strings() {
        let values: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"port": 8080, "host": "127.0.0.1", "ratio": 1.0, "on": true}"#,
        )
        .unwrap();
        let sub = |s: &str| substitute(&Value::String(s.into()), &values);
        assert_eq!(
            sub("${port}"),
            Value::from(8080),
            "a whole value keeps its type"
        );
        assert_eq!(sub("$port"), Value::from(8080));
        assert_eq!(sub("http://${host}:$port/x"), "http://127.0.0.1:8080/x");
        assert_eq!(sub("${ratio} ${on}"), "1.0 True", "as Python writes them");
        assert_eq!(
            sub("${missing} and $$5 and ${port"),
            "${missing} and $5 and ${port"
        );
        assert_eq!(sub("${missing}"), "${missing}");
        assert_eq!(sub("$1 $"), "$1 $");
        let nested = substitute(
            &serde_json::json!({"a": ["-p", "${port}"], "b": {"c": "${host}"}}),
            &values,
        );
        assert_eq!(
            nested,
            serde_json::json!({"a": ["-p", 8080], "b": {"c": "127.0.0.1"}})
        );
    }
}
