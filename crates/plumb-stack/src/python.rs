//! Python stacks of every thread, through `py-spy dump --json`.

use crate::Options;
use crate::tools::{self, Found, Spawner};
use plumb_model::stack::{Missing, MissingReason, StackFrame, StackKind, ThreadStack};
use serde::Deserialize;
use std::process::Command;

const WHAT: &str = "python stacks";

/// The part of py-spy's JSON dump used here (one entry per thread).
#[derive(Debug, Deserialize)]
struct Thread {
    #[serde(default)]
    thread_name: Option<String>,
    #[serde(default)]
    os_thread_id: Option<u64>,
    #[serde(default)]
    thread_id: u64,
    #[serde(default)]
    active: bool,
    #[serde(default)]
    owns_gil: bool,
    #[serde(default)]
    frames: Vec<Frame>,
}

#[derive(Debug, Deserialize)]
struct Frame {
    name: String,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    line: Option<i64>,
    #[serde(default)]
    locals: Option<Vec<Local>>,
}

#[derive(Debug, Deserialize)]
struct Local {
    name: String,
    #[serde(default)]
    repr: Option<String>,
}

/// The Python stacks of every thread of `pid`.
pub(crate) fn stacks(
    pid: u32,
    opts: &Options,
    found: &Found,
    spawner: &dyn Spawner,
) -> Result<Vec<ThreadStack>, Missing> {
    let Some(py_spy) = &found.py_spy else {
        return Err(Missing {
            what: WHAT.into(),
            reason: MissingReason::NotInstalled,
            detail: "py-spy is not installed (not on PATH): pip install py-spy".into(),
        });
    };
    let mut cmd = Command::new(py_spy);
    cmd.args(["dump", "--json", "--pid", &pid.to_string()]);
    if opts.locals {
        cmd.arg("--locals");
    }
    let out = tools::run(
        cmd,
        "py-spy",
        WHAT,
        opts.tool_timeout,
        opts.output_cap,
        spawner,
    )?;
    if !out.success {
        return Err(tools::failure(pid, "py-spy", WHAT, &out));
    }
    parse(&out.stdout).map_err(|e| Missing {
        what: WHAT.into(),
        reason: MissingReason::Failed,
        detail: if out.cut {
            format!("py-spy's output was over the {} byte cap", opts.output_cap)
        } else {
            format!("py-spy's output could not be read: {e}")
        },
    })
}

/// py-spy's JSON as thread stacks; frames come innermost first already.
pub(crate) fn parse(json: &str) -> Result<Vec<ThreadStack>, serde_json::Error> {
    let threads: Vec<Thread> = serde_json::from_str(json)?;
    Ok(threads
        .into_iter()
        .map(|t| ThreadStack {
            tid: t.os_thread_id.unwrap_or(t.thread_id) as u32,
            name: t.thread_name,
            kind: StackKind::Python,
            status: Some(
                match (t.active, t.owns_gil) {
                    (_, true) => "active, holds the GIL",
                    (true, false) => "active",
                    (false, false) => "idle",
                }
                .into(),
            ),
            frames: t
                .frames
                .into_iter()
                .map(|f| StackFrame {
                    function: f.name,
                    file: f.filename,
                    line: f.line.and_then(|l| u32::try_from(l).ok()),
                    locals: f
                        .locals
                        .unwrap_or_default()
                        .into_iter()
                        .map(|l| (l.name, l.repr.unwrap_or_else(|| "?".into())))
                        .collect(),
                })
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_py_spy_dump_is_read() {
        let json = r#"[{"pid":7,"thread_id":1399,"thread_name":"MainThread","os_thread_id":7,
            "active":false,"owns_gil":false,"frames":[
            {"name":"wait_lock","filename":"/j/job.py","module":null,"short_filename":"job.py","line":6,
             "locals":[{"name":"x","addr":1,"arg":false,"repr":"42"}],"is_entry":false},
            {"name":"<module>","filename":"/j/job.py","line":10,"locals":null}],"process_info":null}]"#;
        let t = super::parse(json).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].tid, 7);
        assert_eq!(t[0].status.as_deref(), Some("idle"));
        assert_eq!(t[0].frames[0].describe(), "wait_lock (/j/job.py:6)");
        assert_eq!(t[0].frames[0].locals, [("x".to_string(), "42".to_string())]);
    }
}
