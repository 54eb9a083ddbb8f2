//! Native stacks of every thread: `eu-stack` (elfutils) when installed,
//! else `gdb`.

use crate::Options;
use crate::tools::{self, Found, Spawner};
use plumb_model::stack::{Missing, MissingReason, StackFrame, StackKind, ThreadStack};
use std::process::Command;

const WHAT: &str = "native stacks";

/// Reads one tool's output into thread stacks.
type Parser = fn(&str) -> Vec<ThreadStack>;

/// The native stacks of every thread of `pid`.
pub(crate) fn stacks(
    pid: u32,
    opts: &Options,
    found: &Found,
    spawner: &dyn Spawner,
) -> Result<Vec<ThreadStack>, Missing> {
    let (tool, cmd, parse): (&str, Command, Parser) = match (&found.eu_stack, &found.gdb) {
        (Some(eu), _) => {
            let mut cmd = Command::new(eu);
            // -s adds each frame's source file and line where debug
            // information has them.
            cmd.args(["-s", "-p", &pid.to_string()]);
            ("eu-stack", cmd, parse_eu_stack)
        }
        (None, Some(gdb)) => {
            let mut cmd = Command::new(gdb);
            cmd.args(["-batch", "-nx", "-p", &pid.to_string()])
                .args(["-ex", "thread apply all bt"]);
            ("gdb", cmd, parse_gdb)
        }
        (None, None) => {
            return Err(Missing {
                    what: WHAT.into(),
                    reason: MissingReason::NotInstalled,
                    detail: "neither eu-stack nor gdb is installed (not on PATH): apt install elfutils (or gdb)".into(),
                });
        }
    };
    let out = tools::run(cmd, tool, WHAT, opts.tool_timeout, opts.output_cap, spawner)?;
    let threads = parse(&out.stdout);
    // eu-stack exits non-zero when one thread cannot be unwound, and gdb
    // exits 0 when it cannot attach: what was printed decides.
    if threads.is_empty() {
        return Err(tools::failure(pid, tool, WHAT, &out));
    }
    Ok(threads)
}

/// A native thread with no frames yet, as both parsers start one.
fn native_thread(tid: u32, name: Option<String>) -> ThreadStack {
    ThreadStack {
        tid,
        name,
        kind: StackKind::Native,
        status: None,
        frames: Vec::new(),
    }
}

/// `eu-stack -s` output: `TID n:` headers, `#k 0xADDR function` frames,
/// each optionally followed by an indented `file:line[:column]`.
pub(crate) fn parse_eu_stack(text: &str) -> Vec<ThreadStack> {
    let mut threads: Vec<ThreadStack> = Vec::new();
    for line in text.lines() {
        if let Some(tid) = line.strip_prefix("TID ").and_then(|r| r.strip_suffix(':')) {
            threads.push(native_thread(tid.trim().parse().unwrap_or(0), None));
        } else if let Some(rest) = line.strip_prefix('#') {
            let Some(t) = threads.last_mut() else {
                continue;
            };
            // "0  0x00007f... function"
            let mut parts = rest.split_whitespace().skip(1);
            let _address = parts.next();
            let function = parts.collect::<Vec<_>>().join(" ");
            t.frames.push(StackFrame {
                function: if function.is_empty() {
                    "??".into()
                } else {
                    function
                },
                ..StackFrame::default()
            });
        } else if line.starts_with("    ")
            && let Some(f) = threads.last_mut().and_then(|t| t.frames.last_mut())
        {
            let (file, line) = file_line(line.trim());
            f.file = Some(file);
            f.line = line;
        }
    }
    threads
}

/// `file:line:column` or `file:line` or `file`.
fn file_line(s: &str) -> (String, Option<u32>) {
    let parts: Vec<&str> = s.rsplitn(3, ':').collect();
    let num = |p: &str| p.parse::<u32>().ok();
    match parts.as_slice() {
        [col, line, file] if num(col).is_some() && num(line).is_some() => {
            (file.to_string(), num(line))
        }
        [line, rest @ ..] if num(line).is_some() => {
            let file: Vec<&str> = rest.iter().rev().copied().collect();
            (file.join(":"), num(line))
        }
        _ => (s.to_string(), None),
    }
}

/// `gdb -batch -ex 'thread apply all bt'` output: `Thread N (Thread 0x..
/// (LWP tid) "name"):` headers and `#k [0xADDR in ]function (args) [at
/// file:line | from lib]` frames.
pub(crate) fn parse_gdb(text: &str) -> Vec<ThreadStack> {
    let mut threads: Vec<ThreadStack> = Vec::new();
    for line in text.lines() {
        if line.starts_with("Thread ") && line.ends_with("):") {
            let tid = line
                .split("(LWP ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            let name = line
                .rsplit_once(") \"")
                .and_then(|(_, n)| n.strip_suffix("\"):"))
                .map(str::to_string);
            threads.push(native_thread(tid, name));
        } else if let Some(rest) = line.strip_prefix('#') {
            let Some(t) = threads.last_mut() else {
                continue;
            };
            let rest = rest
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            let rest = match rest.split_once(" in ") {
                Some((addr, r)) if addr.starts_with("0x") => r,
                _ => rest,
            };
            let function = rest.split(" (").next().unwrap_or("??").trim().to_string();
            let (file, line) = if let Some((_, at)) = rest.rsplit_once(" at ") {
                let (f, l) = file_line(at.trim());
                (Some(f), l)
            } else if let Some((_, lib)) = rest.rsplit_once(" from ") {
                (Some(lib.trim().to_string()), None)
            } else {
                (None, None)
            };
            t.frames.push(StackFrame {
                function,
                file,
                line,
                locals: Vec::new(),
            });
        }
    }
    threads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eu_stack_output_is_read_with_sources() {
        let text = "PID 5 - process\nTID 5:\n#0  0x00007fa9e4fb9df2 pause\n    ../sysdeps/unix/sysv/linux/pause.c:29:10\n#1  0x00005556ef135152 stuck_here\n    /tmp/stk/stuck.c:3:51\n#2  0x00005556ef135081 _start\nTID 8:\n#0  0x00007fa9e4fb9df2 pause\n";
        let t = parse_eu_stack(text);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].tid, 5);
        assert_eq!(t[0].frames[1].describe(), "stuck_here (/tmp/stk/stuck.c:3)");
        assert_eq!(t[0].frames[2].describe(), "_start");
        assert_eq!(t[1].frames[0].function, "pause");
    }

    #[test]
    fn gdb_output_is_read() {
        let text = "0x00007f in __libc_pause () at pause.c:29\n\nThread 2 (Thread 0x7fa (LWP 25808) \"stuck\"):\n#0  0x00007fa9e4fb9df2 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29\n#1  0x00005556ef135152 in stuck_here () at stuck.c:3\n#2  0x00007f in ?? () from /lib/x86_64-linux-gnu/libc.so.6\n\nThread 1 (Thread 0x7fb (LWP 25806) \"stuck\"):\n#0  stuck_here () at stuck.c:3\n";
        let t = parse_gdb(text);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].tid, 25808);
        assert_eq!(t[0].name.as_deref(), Some("stuck"));
        assert_eq!(t[0].frames[1].describe(), "stuck_here (stuck.c:3)");
        assert_eq!(
            t[0].frames[2].describe(),
            "?? (/lib/x86_64-linux-gnu/libc.so.6)"
        );
        assert_eq!(t[1].frames[0].describe(), "stuck_here (stuck.c:3)");
    }
}
