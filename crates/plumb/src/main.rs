//! The `plumb` command: argument parsing and wiring only. The work lives in
//! the library crates.

mod cmd;
mod config;
mod exit;
mod lease;
mod logging;
mod out;
mod store;
mod target;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Record, gather, watch and break distributed applications.
#[derive(Debug, Parser)]
#[command(name = "plumb", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command exactly as if run directly, and record it.
    Run(Box<cmd::run::Args>),
    /// Run a command periodically, each run recorded; overlapping starts skipped.
    Every(Box<cmd::every::Args>),
    /// List recorded runs.
    Ls(cmd::query::LsArgs),
    /// Show everything recorded about one run.
    Show(cmd::query::ShowArgs),
    /// Print (or follow) a run's output.
    Logs(cmd::query::LogsArgs),
    /// Search recorded output, log records and spans.
    Search(cmd::query::SearchArgs),
    /// Show one trace: its spans as a tree, with their log records.
    Trace(cmd::query::TraceArgs),
    /// Say why two runs differ.
    Diff(cmd::query::DiffArgs),
    /// Software environments: this host's or a node's, drift across nodes, diffs, lock checks.
    Env(cmd::env::Args),
    /// Runs given the same inputs that produced different outputs.
    Integrity(cmd::integrity::Args),
    /// Do a recorded run again, here: same command, directory and environment.
    Rerun(cmd::rerun::Args),
    /// Check what a job needs of this host before launching it (user, paths, disk, ports...).
    Preflight(cmd::preflight::Args),
    /// Run the demo workload and show what plumb recorded.
    Demo(cmd::demo::Args),
    /// Inspect checkpoint directories: list, verify, show.
    Checkpoint(cmd::checkpoint::Args),
    /// Run the Toxiproxy-compatible fault-injection proxy, or drive a running one.
    Proxy(cmd::proxy::Args),
    /// Chaos experiments: inject faults on a schedule, check the steady state, report.
    Chaos(cmd::chaos::Args),
    /// Run the collector: ingest from every node, serve the query API.
    Serve(cmd::serve::Args),
    /// Create, list and revoke the collector's access tokens.
    Token(cmd::token::Args),
    /// Move a whole store: copy it to another place or backend, compared at the end.
    Store(cmd::store::Args),
    /// The node daemon: heartbeats to the collector, and shipping of runs left behind.
    Agent(cmd::agent::Args),
    /// List the nodes the collector knows, with their state.
    Nodes(cmd::nodes::Args),
    /// Benchmark this node: CPU, memory bandwidth, disk I/O, network to a collector.
    BenchNode(cmd::bench_node::Args),
    /// The collector's alerts (firing and resolved), or its rules.
    Alerts(cmd::alerts::Args),
    /// Failures grouped by exception fingerprint: list, show, resolve.
    Errors(cmd::errors::Args),
    /// Running runs that take longer than usual for their name.
    Slow(cmd::slow::Args),
    /// What every process of a job is doing right now: stacks, grouped.
    Stack(cmd::stack::Args),
    /// Sampled CPU profiles of every process of a job, merged into flame graphs.
    Profile(cmd::profile::Args),
    /// Clock offsets: each node's against the collector, or this host's now.
    Clock(cmd::clock::Args),
    /// One merged, clock-corrected timeline of the fleet, or of log files (--merge).
    Timeline(Box<cmd::timeline::Args>),
    /// Throttles: each one's N, its holders and its queue (fleet-wide with a collector).
    Throttles(cmd::throttles::Args),
    /// Run a command for each new file in a directory, recorded, throttled, journaled.
    Watch(cmd::watch::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(
        cli.command,
        Command::Serve(_) | Command::Agent(_) | Command::Proxy(_)
    );
    if matches!(cli.command, Command::Chaos(_)) {
        // The chaos run breaks the upstreams of its own proxy on purpose.
        logging::init_with(daemon, "warn,plumb_proxy=error");
    } else {
        logging::init(daemon);
    }
    if matches!(
        cli.command,
        Command::Ls(_)
            | Command::Show(_)
            | Command::Logs(_)
            | Command::Search(_)
            | Command::Trace(_)
            | Command::Diff(_)
            | Command::Env(_)
            | Command::Integrity(_)
            | Command::Preflight(_)
            | Command::Nodes(_)
            | Command::BenchNode(_)
            | Command::Alerts(_)
            | Command::Errors(_)
            | Command::Slow(_)
            | Command::Clock(_)
            | Command::Checkpoint(_)
            | Command::Stack(_)
            | Command::Profile(_)
            | Command::Timeline(_)
            | Command::Throttles(_)
            | Command::Store(_)
    ) {
        logging::die_quietly_on_closed_pipe();
    }
    let result = match cli.command {
        Command::Run(a) => cmd::run::main(*a),
        Command::Every(a) => cmd::every::main(*a),
        Command::Ls(a) => cmd::query::ls(a),
        Command::Show(a) => cmd::query::show(a),
        Command::Logs(a) => cmd::query::logs(a),
        Command::Search(a) => cmd::query::search(a),
        Command::Trace(a) => cmd::query::trace(a),
        Command::Diff(a) => cmd::query::diff(a),
        Command::Env(a) => cmd::env::main(a),
        Command::Integrity(a) => cmd::integrity::main(a),
        Command::Rerun(a) => cmd::rerun::main(a),
        Command::Preflight(a) => cmd::preflight::main(a),
        Command::Demo(a) => cmd::demo::main(a),
        Command::Checkpoint(a) => cmd::checkpoint::main(a),
        Command::Proxy(a) => cmd::proxy::main(a),
        Command::Chaos(a) => cmd::chaos::main(a),
        Command::Serve(a) => cmd::serve::main(a),
        Command::Token(a) => cmd::token::main(a),
        Command::Store(a) => cmd::store::main(a),
        Command::Agent(a) => cmd::agent::main(a),
        Command::Nodes(a) => cmd::nodes::main(a),
        Command::BenchNode(a) => cmd::bench_node::main(a),
        Command::Alerts(a) => cmd::alerts::main(a),
        Command::Errors(a) => cmd::errors::main(a),
        Command::Slow(a) => cmd::slow::main(a),
        Command::Stack(a) => cmd::stack::main(a),
        Command::Profile(a) => cmd::profile::main(a),
        Command::Clock(a) => cmd::clock::main(a),
        Command::Timeline(a) => cmd::timeline::main(*a),
        Command::Throttles(a) => cmd::throttles::main(a),
        Command::Watch(a) => cmd::watch::main(a),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): nothing is wrong.
        Err(err) if logging::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // Errors are printed once, here, with their cause chain.
            eprintln!("plumb: error: {err:#}");
            ExitCode::from(exit::for_error(&err))
        }
    }
}
