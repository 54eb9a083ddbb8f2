//! How plumb's own diagnostics look: colour only on a terminal and never
//! with `NO_COLOR`; daemons (`serve`, `agent`, `proxy` as a server) print
//! timestamped lines for their logs, every other command prints
//! `plumb: warning: ...` so its lines stand apart from the program's own
//! when they share a stderr.
//!
//! Also: a command that prints for a reader (`ls`, `logs`, `search`, ...)
//! dies quietly when that reader goes away, as grep does, instead of
//! printing "Broken pipe" or panicking in `println!`.

use std::io::IsTerminal;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether colour may be written to stderr.
pub fn colour_on_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Installs the tracing subscriber; `daemon` picks the timestamped form.
pub fn init(daemon: bool) {
    init_with(daemon, "warn");
}

/// [`init`] with another filter when PLUMB_LOG is not set (`plumb chaos`
/// keeps its in-process proxy's warnings about the upstream it broke on
/// purpose to itself).
pub fn init_with(daemon: bool, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLUMB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr());
    if daemon {
        builder.init();
    } else {
        builder.event_format(Prefixed).init();
    }
}

/// `plumb: warning: message key=value ...`.
struct Prefixed;

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        write!(writer, "plumb: {level}: ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Lets SIGPIPE end the process, silently, as it ends grep: for commands
/// whose whole job is printing. Never for `plumb run` (recording must not
/// fail because the reader of the program's output went away) nor for
/// servers.
pub fn die_quietly_on_closed_pipe() {
    // SAFETY: restoring the default disposition of a signal is
    // async-signal-safe and done before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Whether an error comes from writing to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
