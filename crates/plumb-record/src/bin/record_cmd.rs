//! Records one command with `plumb_record::record` and writes everything the
//! sink is given to a file as JSON lines, then exits like the command did.
//!
//! ```text
//! record_cmd EVENTS.jsonl [--extra NAME=VALUE]... [--name NAME] -- CMD ARGS...
//! ```
//!
//! The recorder's integration tests drive it as a separate process, so that
//! signals, terminals and exit codes are those of a real recording process.
//! It is a binary target rather than an example because cargo builds binary
//! targets for integration tests (`CARGO_BIN_EXE_record_cmd`) and does not
//! build examples for `cargo nextest run`.

use plumb_model::{Fingerprint, Run, Stream, Timestamp};
use plumb_record::{RecordError, Redactor, RunOptions, Sink, record};
use serde_json::json;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Writes every sink call as one JSON line; output bytes as hex.
struct JsonLines(std::io::BufWriter<std::fs::File>);

impl JsonLines {
    fn line(&mut self, value: serde_json::Value) {
        let _ = writeln!(self.0, "{value}");
    }
}

impl Sink for JsonLines {
    fn started(&mut self, run: &Run) {
        self.line(json!({"event": "started", "run": run}));
    }
    fn output(&mut self, stream: Stream, seq: u64, time: Timestamp, data: &[u8]) {
        self.line(json!({
            "event": "output",
            "stream": stream,
            "seq": seq,
            "time": time,
            "hex": plumb_model::hex(data),
        }));
    }
    fn fingerprint(&mut self, hash: &str, _fingerprint: &Fingerprint) {
        self.line(json!({"event": "fingerprint", "hash": hash}));
    }
    fn finished(&mut self, run: &Run) {
        self.line(json!({"event": "finished", "run": run}));
        let _ = self.0.flush();
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: record_cmd EVENTS.jsonl [--extra NAME=VALUE]... [--name NAME] -- CMD ARGS..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(events) = args.next() else {
        return usage();
    };
    let mut extra_env = Vec::new();
    let mut name = None;
    let mut argv: Vec<OsString> = Vec::new();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--") => {
                argv.extend(args.by_ref());
                break;
            }
            Some("--name") => name = args.next().map(|n| n.to_string_lossy().into_owned()),
            Some("--extra") => {
                let Some(kv) = args.next() else {
                    return usage();
                };
                let kv = kv.to_string_lossy().into_owned();
                let Some((k, v)) = kv.split_once('=') else {
                    return usage();
                };
                extra_env.push((k.to_string(), v.to_string()));
            }
            _ => return usage(),
        }
    }
    let file = match std::fs::File::create(&events) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "record_cmd: cannot create {}: {e}",
                events.to_string_lossy()
            );
            return ExitCode::from(2);
        }
    };
    let mut sink = JsonLines(std::io::BufWriter::new(file));
    // The fingerprint cache sits beside the events file, so that every
    // recording can be thrown away with its directory.
    let cache_dir = std::path::Path::new(&events)
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("fingerprint-cache");
    let opts = RunOptions {
        argv,
        name,
        tags: BTreeMap::new(),
        config_files: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        redactor: Redactor::new(b"record_cmd key"),
        cache_dir,
        python: None::<PathBuf>,
        tools: BTreeMap::new(),
        extra_env,
        run_id: plumb_model::new_id(),
        postmortem_dir: None,
    };
    match record(opts, &mut sink) {
        Ok(run) => {
            let code = run.exit.map(|e| e.shell_code()).unwrap_or(255);
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        Err(RecordError::Spawn { program, source }) => {
            eprintln!("record_cmd: cannot run `{program}`: {source}");
            // As a shell does: 127 for not found, 126 for not executable.
            let code = if source.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("record_cmd: {e}");
            ExitCode::from(2)
        }
    }
}
