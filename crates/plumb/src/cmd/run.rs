//! `plumb run`: run a command exactly as if run directly, and record it.

use crate::config::{Config, parse_key_value};
use anyhow::{Result, bail};
use plumb_model::{Fingerprint, Run, Stream, Timestamp};
use plumb_record::{Redactor, RunOptions, Sink};
use plumb_store::{Destination, RunWriter, WriterConfig};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `plumb run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run name (default: the program's base name).
    #[arg(long)]
    pub name: Option<String>,
    /// A tag, `key=value` (repeatable).
    #[arg(long = "tag", value_parser = parse_key_value)]
    pub tags: Vec<(String, String)>,
    /// A configuration file to record: size, hash and (when small) its
    /// redacted content (repeatable; also PLUMB_CONFIG_FILES).
    #[arg(long = "config")]
    pub configs: Vec<PathBuf>,
    /// An input file to hash before the run (repeatable).
    #[arg(long = "input")]
    pub inputs: Vec<PathBuf>,
    /// An output file to hash after the run (repeatable).
    #[arg(long = "output")]
    pub outputs: Vec<PathBuf>,
    /// The command and its arguments (after `--`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Forwards the recorder's events to the store writer.
struct StoreSink {
    writer: Option<RunWriter>,
    destination: Option<Destination>,
}

impl Sink for StoreSink {
    fn started(&mut self, run: &Run) {
        if let Some(w) = &self.writer {
            w.started(run);
        }
    }
    fn output(&mut self, stream: Stream, seq: u64, time: Timestamp, data: &[u8]) {
        if let Some(w) = &self.writer {
            w.output(stream, seq, time, data);
        }
    }
    fn fingerprint(&mut self, hash: &str, fingerprint: &Fingerprint) {
        if let Some(w) = &self.writer {
            w.fingerprint(hash, fingerprint);
        }
    }
    fn finished(&mut self, run: &Run) {
        if let Some(w) = self.writer.take() {
            self.destination = Some(w.finish(run));
        }
    }
}

/// Builds the recorder's options from configuration and arguments.
pub fn options(cfg: &Config, args: &Args, run_id: plumb_model::Uuid) -> Result<RunOptions> {
    let mut configs = cfg.config_files.clone();
    configs.extend(args.configs.iter().cloned());
    // A configuration file named on purpose but missing is a mistake worth
    // stopping for, before anything runs.
    for c in configs.iter().chain(&args.inputs) {
        if !c.is_file() {
            bail!(
                "{} does not exist or is not a file (named with --config/--input or PLUMB_CONFIG_FILES)",
                c.display()
            );
        }
    }
    let redactor = Redactor::new(&cfg.redaction_key())
        .with_extra_fragments(cfg.redact_names.iter().cloned())
        .with_allowed_names(cfg.redact_allow.iter().cloned());
    let otel = match std::env::var("OTEL_RESOURCE_ATTRIBUTES") {
        Ok(v) if !v.trim().is_empty() => format!("{v},plumb.run.id={run_id}"),
        _ => format!("plumb.run.id={run_id}"),
    };
    Ok(RunOptions {
        argv: args.command.clone(),
        name: args.name.clone(),
        tags: args.tags.iter().cloned().collect(),
        config_files: configs,
        inputs: args.inputs.clone(),
        outputs: args.outputs.clone(),
        redactor,
        cache_dir: cfg.home.join("cache"),
        python: cfg.python.clone(),
        tools: cfg.tools.clone(),
        extra_env: vec![
            ("PLUMB_RUN_ID".into(), run_id.to_string()),
            ("OTEL_RESOURCE_ATTRIBUTES".into(), otel),
        ],
        run_id,
    })
}

pub fn main(args: Args) -> Result<ExitCode> {
    let cfg = Config::load()?;
    let run_id = plumb_model::new_id();
    let opts = options(&cfg, &args, run_id)?;
    let writer = RunWriter::start(
        WriterConfig {
            store_dir: cfg.home.clone(),
            spool_dirs: plumb_store::spool::candidate_dirs(&cfg.home),
            output_cap: cfg.output_cap,
            flush_interval: Duration::from_secs(1),
            busy_timeout: Duration::from_secs(5),
        },
        Box::new(|line| eprintln!("{line}")),
    );
    let mut sink = StoreSink {
        writer: Some(writer),
        destination: None,
    };
    match plumb_record::record(opts, &mut sink) {
        Ok(run) => {
            let code = run.exit.as_ref().map_or(255, |e| e.shell_code());
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        Err(plumb_record::RecordError::Spawn { program, source }) => {
            eprintln!("plumb: cannot run `{program}`: {source}");
            // The codes a shell uses: 127 not found, 126 found but not runnable.
            let code = if source.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            Ok(ExitCode::from(code))
        }
        Err(e) => Err(e.into()),
    }
}
