//! Where commands print for people.
//!
//! Almost everything plumb prints came from somewhere else: run names,
//! hosts, node names, error messages and labels are sent by any node with
//! an agent token, or written by the programs plumb records. Printed raw,
//! `ESC ]0;` retitles the terminal, `ESC [2J` clears it and `ESC ]52;`
//! writes the clipboard. So commands print through [`stdout`] (or
//! [`outln!`]/[`out!`], which use it): an [`Escaping`] writer that turns
//! every control character but newline and tab into its escape
//! (`\u{1b}`). Table cells also go through `plumb_model::text::Cell`, so
//! a newline in a value cannot forge a row.
//!
//! `clippy.toml` forbids `println!`, `print!` and `std::io::stdout` in this
//! crate, so a new command cannot print around it by accident. Bytes that
//! must pass as they are (a checkpoint's binary payload, `timeline --merge`'s
//! log lines into a pipe or file) go through
//! [`raw_stdout`], by name; `cmd/query.rs` (`logs` writes a run's output as
//! the program wrote it) is let off with an `allow` on its `mod` line.

use plumb_model::text::Escaping;
use std::io::{StdoutLock, Write};

/// Standard output for text meant for people (tables, `show`, messages,
/// JSON, which has no control characters unescaped anyway): control
/// characters are escaped.
#[allow(clippy::disallowed_methods)]
pub fn stdout() -> Escaping<StdoutLock<'static>> {
    Escaping::new(std::io::stdout().lock())
}

/// Standard output as it is, for bytes that must reach it unchanged (a
/// payload meant for a file or a pipe), never for text from elsewhere.
#[allow(clippy::disallowed_methods)]
pub fn raw_stdout() -> StdoutLock<'static> {
    std::io::stdout().lock()
}

/// Writes `args` to [`stdout`], as `print!` does: a failure to write other
/// than a closed pipe (which ends the process, see
/// `logging::die_quietly_on_closed_pipe`) panics, as `print!`'s does.
pub fn print(args: std::fmt::Arguments<'_>) {
    let mut out = stdout();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        panic!("failed printing to stdout: {e}");
    }
}

/// `println!` through [`stdout`]: control characters escaped.
macro_rules! outln {
    () => {
        $crate::out::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`stdout`]: control characters escaped.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::print(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};
