//! Parses the exception or panic a program died with from the tail of its
//! stderr: Python tracebacks (chained too), Rust panics, Java exceptions, Go
//! panics.
//!
//! The input is whatever the recorder kept of stderr: it may start in the
//! middle of a line, hold bytes that are not UTF-8, carry terminal colours,
//! and have unrelated log lines before and after the interesting part. Each
//! language's parser finds the last failure it recognizes; the one that
//! starts last wins, since a program dies of the last thing it reports.
//!
//! ```
//! let stderr = b"Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    main()\nValueError: bad input\n";
//! let e = plumb_model::exception::parse(stderr).unwrap();
//! assert_eq!((e.language.as_str(), e.kind.as_str(), e.message.as_str()), ("python", "ValueError", "bad input"));
//! assert_eq!(e.frames[0].line, Some(3));
//! ```

use crate::{Exception, Frame};
use sha2::{Digest, Sha256};

/// How many chained causes are followed at most; a guard against pathological
/// input, far beyond what real programs print.
const MAX_CAUSES: usize = 64;

/// How deep nested exception groups are followed at most.
const MAX_GROUP_DEPTH: usize = 8;

/// How many lines of a Rust panic message are kept at most.
const MAX_MESSAGE_LINES: usize = 50;

/// Finds the last exception or panic in the tail of a failed program's
/// stderr and parses it, with a fingerprint for grouping.
pub fn parse(stderr_tail: &[u8]) -> Option<Exception> {
    let text = String::from_utf8_lossy(stderr_tail);
    let lines: Vec<String> = text.split('\n').map(clean_line).collect();
    let mut found = parse_lines(&lines, 0)?;
    set_fingerprints(&mut found);
    Some(found)
}

/// The last failure of any language in `lines`, without fingerprints.
fn parse_lines(lines: &[String], depth: usize) -> Option<Exception> {
    [
        python_last(lines, depth),
        rust_last(lines),
        java_last(lines),
        go_last(lines),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|(start, _)| *start)
    .map(|(_, e)| e)
}

/// Removes a trailing `\r` and ANSI escape sequences (Python 3.13 colours its
/// tracebacks on a terminal, and the child may have one).
fn clean_line(line: &str) -> String {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if !line.contains('\u{1b}') {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // CSI: parameters and intermediates, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

fn is_indented(line: &str) -> bool {
    line.starts_with([' ', '\t'])
}

/// A dotted identifier such as `ValueError` or `pkg.mod.Error`.
fn is_dotted_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        })
}

// ---------------------------------------------------------------- Python

const PY_HEADER: &str = "Traceback (most recent call last):";
const PY_GROUP_HEADER: &str = "Exception Group Traceback (most recent call last):";
const PY_CHAIN_SEPARATORS: &[&str] = &[
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
];

/// `Type: message` or a bare `Type`, at the start of a line.
fn py_exception_line(line: &str) -> Option<(String, String)> {
    if line.is_empty() || is_indented(line) {
        return None;
    }
    let (kind, message) = match line.split_once(": ") {
        Some((k, m)) => (k, m),
        None => (line.strip_suffix(':').unwrap_or(line), ""),
    };
    is_dotted_name(kind).then(|| (kind.to_string(), message.to_string()))
}

/// `  File "path", line N, in func` (the `in` part is missing for
/// SyntaxError locations).
fn py_frame(line: &str) -> Option<Frame> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (file, rest) = rest.split_once("\", line ")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let line_no = rest[..digits].parse().ok()?;
    let rest = &rest[digits..];
    let function = match rest.strip_prefix(", in ") {
        Some(f) => Some(f.trim_end().to_string()),
        None if rest.trim().is_empty() => None,
        None => return None,
    };
    Some(Frame {
        file: Some(file.to_string()),
        line: Some(line_no),
        function,
    })
}

/// A traceback whose exception line is `lines[end]`: walks up over the
/// indented frame and source lines to the header (or to where the input was
/// cut). Returns the index of its first line.
fn py_block_ending_at(lines: &[String], end: usize) -> Option<(usize, Exception)> {
    let (kind, message) = py_exception_line(&lines[end])?;
    let mut frames = Vec::new();
    let mut start = end;
    let mut header = false;
    while start > 0 {
        let above = &lines[start - 1];
        if above == PY_HEADER {
            header = true;
            start -= 1;
            break;
        }
        if !is_indented(above) {
            break;
        }
        if let Some(f) = py_frame(above) {
            frames.push(f);
        }
        start -= 1;
    }
    if !header && frames.is_empty() {
        return None;
    }
    frames.reverse();
    Some((
        start,
        Exception {
            language: "python".into(),
            kind,
            message,
            frames,
            causes: Vec::new(),
            fingerprint: String::new(),
        },
    ))
}

/// The index of the previous non-blank line before `i`.
fn previous_non_blank(lines: &[String], i: usize) -> Option<usize> {
    (0..i).rev().find(|&j| !lines[j].trim().is_empty())
}

fn python_last(lines: &[String], depth: usize) -> Option<(usize, Exception)> {
    let plain = (0..lines.len())
        .rev()
        .find_map(|i| py_block_ending_at(lines, i))
        .map(|(start, mut e)| {
            // Follow the chain upwards: separator, then the block before it.
            let mut first = start;
            let mut causes = Vec::new();
            while causes.len() < MAX_CAUSES {
                let Some(sep) = previous_non_blank(lines, first) else {
                    break;
                };
                if !PY_CHAIN_SEPARATORS.contains(&lines[sep].trim()) {
                    break;
                }
                let Some(prev_end) = previous_non_blank(lines, sep) else {
                    break;
                };
                let Some((prev_start, cause)) = py_block_ending_at(lines, prev_end) else {
                    break;
                };
                causes.push(cause);
                first = prev_start;
            }
            // Printed root cause first; the walk went the other way.
            causes.reverse();
            e.causes = causes;
            (first, e)
        });
    let group = if depth < MAX_GROUP_DEPTH {
        (0..lines.len())
            .rev()
            .find(|&i| lines[i].trim_start().trim_start_matches('+').trim() == PY_GROUP_HEADER)
            .and_then(|i| py_group_at(lines, i, depth).map(|e| (i, e)))
    } else {
        None
    };
    match (plain, group) {
        (Some(p), Some(g)) => Some(if g.0 > p.0 { g } else { p }),
        (p, g) => p.or(g),
    }
}

/// An exception group whose header is `lines[header]`:
///
/// ```text
///   + Exception Group Traceback (most recent call last):
///   |   File "<string>", line 3, in f
///   | ExceptionGroup: eg (2 sub-exceptions)
///   +-+---------------- 1 ----------------
///     | ValueError: a
///     +------------------------------------
/// ```
///
/// The group's own frames and message come from the `|` lines under the
/// header; each numbered sub-exception is parsed recursively and kept in
/// `causes`, for want of a better place in the model.
fn py_group_at(lines: &[String], header: usize, depth: usize) -> Option<Exception> {
    let col = lines[header].find('+')?;
    let strip = |line: &str, at: usize| -> Option<String> {
        let bytes = line.as_bytes();
        (bytes.len() > at && bytes[at] == b'|')
            .then(|| line.get(at + 2..).unwrap_or("").to_string())
    };
    let mut own = vec![PY_HEADER.to_string()];
    let mut i = header + 1;
    while i < lines.len() {
        match strip(&lines[i], col) {
            Some(inner) => own.push(inner),
            None => break,
        }
        i += 1;
    }
    let end = (0..own.len())
        .rev()
        .find(|&j| py_exception_line(&own[j]).is_some())?;
    let (_, mut group) = py_block_ending_at(&own, end)?;
    // Sub-exceptions: sections at column col + 2, separated by `+---` lines.
    let sub_col = col + 2;
    let mut section: Vec<String> = Vec::new();
    let mut sections = Vec::new();
    while i < lines.len() {
        let line = &lines[i];
        let bytes = line.as_bytes();
        if bytes.len() > sub_col && bytes[sub_col] == b'+' && bytes.get(col) != Some(&b'|') {
            if !section.is_empty() {
                sections.push(std::mem::take(&mut section));
            }
        } else if let Some(inner) = strip(line, sub_col) {
            section.push(inner);
        } else {
            break;
        }
        i += 1;
    }
    if !section.is_empty() {
        sections.push(section);
    }
    for s in sections.iter().take(MAX_CAUSES) {
        let sub = python_last(s, depth + 1).map(|(_, e)| e).or_else(|| {
            // A sub-exception raised without a traceback is just its line.
            s.iter()
                .find_map(|l| py_exception_line(l))
                .map(|(kind, message)| Exception {
                    language: "python".into(),
                    kind,
                    message,
                    ..Default::default()
                })
        });
        if let Some(sub) = sub {
            group.causes.push(sub);
        }
    }
    Some(group)
}

// ---------------------------------------------------------------- Rust

/// `file:line:col` at the end of `s`, returning the file and line.
fn rust_location(s: &str) -> Option<(String, u32)> {
    let (rest, col) = s.rsplit_once(':')?;
    col.parse::<u32>().ok()?;
    let (file, line) = rest.rsplit_once(':')?;
    let line = line.parse().ok()?;
    (!file.is_empty()).then(|| (file.to_string(), line))
}

/// The part after `panicked at ` when `line` is a panic header
/// (`thread 'main' panicked at`, `thread 'main' (1234) panicked at`).
fn rust_panic_rest(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("thread '")?;
    let (_, rest) = rest.split_once('\'')?;
    let rest = rest.trim_start();
    let rest = match rest.strip_prefix('(') {
        Some(r) => r.split_once(')')?.1.trim_start(),
        None => rest,
    };
    rest.strip_prefix("panicked at ")
}

/// Removes the `::h0123456789abcdef` hash suffix and the `[0123abcd]` crate
/// disambiguators of symbol names, which change between builds.
fn rust_clean_symbol(s: &str) -> String {
    let s = match s.rfind("::h") {
        Some(i) if s.len() - i == 19 && s[i + 3..].bytes().all(|b| b.is_ascii_hexdigit()) => {
            &s[..i]
        }
        _ => s,
    };
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if close > 0 && after[..close].bytes().all(|b| b.is_ascii_hexdigit()) => {
                out.push_str(&rest[..open]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Frames of a `stack backtrace:` starting at `lines[i]`, innermost first as
/// printed; returns them and the index after the backtrace.
fn rust_backtrace(lines: &[String], mut i: usize) -> (Vec<Frame>, usize) {
    let mut frames: Vec<Frame> = Vec::new();
    while i < lines.len() {
        let t = lines[i].trim_start();
        if let Some(at) = t.strip_prefix("at ") {
            if let Some(last) = frames.last_mut().filter(|f| f.file.is_none())
                && let Some((file, line)) = rust_location(at.trim_end())
            {
                last.file = Some(file);
                last.line = Some(line);
            }
            i += 1;
            continue;
        }
        let Some((num, rest)) = t.split_once(": ") else {
            break;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        // RUST_BACKTRACE=full adds the address: `0x55d0c6d4e1b1 - name`.
        let name = match rest.trim_start().split_once(" - ") {
            Some((addr, name)) if addr.starts_with("0x") => name,
            _ => rest,
        };
        frames.push(Frame {
            file: None,
            line: None,
            function: Some(rust_clean_symbol(name.trim())),
        });
        i += 1;
    }
    (frames, i)
}

fn rust_last(lines: &[String]) -> Option<(usize, Exception)> {
    let start = (0..lines.len())
        .rev()
        .find(|&i| rust_panic_rest(&lines[i]).is_some() || is_rust_stack_overflow(&lines[i]))?;
    if is_rust_stack_overflow(&lines[start]) {
        return Some((
            start,
            Exception {
                language: "rust".into(),
                kind: "stack overflow".into(),
                message: lines[start].clone(),
                ..Default::default()
            },
        ));
    }
    let rest = rust_panic_rest(&lines[start])?;
    let mut message_lines: Vec<String> = Vec::new();
    let location;
    let mut i = start + 1;
    if let Some(quoted) = rest.strip_prefix('\'') {
        // Before Rust 1.73: `panicked at 'message', src/main.rs:2:5`, where
        // the message may run over several lines.
        let mut current = quoted.to_string();
        let mut j = start;
        loop {
            if let Some((msg, loc)) = current.rsplit_once("', ")
                && let Some(l) = rust_location(loc.trim_end())
            {
                message_lines.push(msg.to_string());
                location = Some(l);
                i = j + 1;
                break;
            }
            message_lines.push(current);
            j += 1;
            if j >= lines.len() || message_lines.len() >= MAX_MESSAGE_LINES {
                location = None;
                break;
            }
            current = lines[j].clone();
        }
    } else {
        // Rust 1.73 and later: `panicked at src/main.rs:2:5:` then the
        // message on the following lines.
        location = rust_location(rest.trim_end().strip_suffix(':').unwrap_or(rest));
        while i < lines.len() && message_lines.len() < MAX_MESSAGE_LINES {
            let l = &lines[i];
            if l.starts_with("note: ")
                || l == "stack backtrace:"
                || rust_panic_rest(l).is_some()
                || (l.is_empty() && i + 1 == lines.len())
            {
                break;
            }
            message_lines.push(l.clone());
            i += 1;
        }
    }
    // Skip notes between the message and the backtrace.
    while i < lines.len() && lines[i].starts_with("note: ") {
        i += 1;
    }
    let mut frames = Vec::new();
    if lines.get(i).map(String::as_str) == Some("stack backtrace:") {
        frames = rust_backtrace(lines, i + 1).0;
        frames.reverse();
    }
    if frames.is_empty()
        && let Some((file, line)) = &location
    {
        frames.push(Frame {
            file: Some(file.clone()),
            line: Some(*line),
            function: None,
        });
    }
    Some((
        start,
        Exception {
            language: "rust".into(),
            kind: "panic".into(),
            message: message_lines.join("\n"),
            frames,
            causes: Vec::new(),
            fingerprint: String::new(),
        },
    ))
}

fn is_rust_stack_overflow(line: &str) -> bool {
    line.starts_with("thread '") && line.ends_with("' has overflowed its stack")
}

// ---------------------------------------------------------------- Java

/// `\tat pkg.Cls.method(File.java:10)`.
fn java_frame(line: &str) -> Option<Frame> {
    if !is_indented(line) {
        return None;
    }
    let rest = line.trim_start().strip_prefix("at ")?;
    let open = rest.find('(')?;
    let inside = rest[open + 1..].strip_suffix(')')?;
    let function = &rest[..open];
    // Drop the module or class loader prefix: `java.base/java.util.X.y`,
    // `app//com.example.Main.run`.
    let function = function.rsplit('/').next().unwrap_or(function);
    let (file, line_no) = match inside.rsplit_once(':') {
        Some((f, n)) => (Some(f.to_string()), n.parse().ok()),
        None if inside.contains('.') => (Some(inside.to_string()), None),
        None => (None, None),
    };
    Some(Frame {
        file,
        line: line_no,
        function: Some(function.to_string()),
    })
}

/// `pkg.Type: message` or `pkg.Type` where the type name has a dot in it.
fn java_exception_line(line: &str) -> Option<(String, String)> {
    if is_indented(line) {
        return None;
    }
    let (kind, message) = line.split_once(": ").unwrap_or((line, ""));
    (kind.contains('.') && is_dotted_name(kind)).then(|| (kind.to_string(), message.to_string()))
}

/// The header of a stack trace: `Exception in thread "main" Type: msg`, or
/// a dotted type line directly followed by an `at` frame.
fn java_header(lines: &[String], i: usize) -> Option<(String, String)> {
    let line = &lines[i];
    if let Some(rest) = line.strip_prefix("Exception in thread \"") {
        let (_, rest) = rest.split_once("\" ")?;
        return java_exception_line(rest);
    }
    if line.starts_with("Caused by: ") {
        return None;
    }
    let next = lines.get(i + 1)?;
    java_frame(next)?;
    java_exception_line(line)
}

fn java_last(lines: &[String]) -> Option<(usize, Exception)> {
    let start = (0..lines.len())
        .rev()
        .find(|&i| java_header(lines, i).is_some())?;
    let (kind, message) = java_header(lines, start)?;
    let mut chain = vec![Exception {
        language: "java".into(),
        kind,
        message,
        ..Default::default()
    }];
    let mut i = start + 1;
    let mut in_suppressed = false;
    while i < lines.len() {
        let line = &lines[i];
        if let Some(rest) = line.strip_prefix("Caused by: ") {
            let Some((kind, message)) = java_exception_line(rest) else {
                break;
            };
            if chain.len() > MAX_CAUSES {
                break;
            }
            chain.push(Exception {
                language: "java".into(),
                kind,
                message,
                ..Default::default()
            });
            in_suppressed = false;
        } else if line.trim_start().starts_with("Suppressed: ") {
            in_suppressed = true;
        } else if line.trim_start().starts_with("... ") && line.trim_end().ends_with(" more") {
            // Frames shared with the enclosing trace, not repeated.
        } else if let Some(frame) = java_frame(line) {
            // Suppressed exceptions' frames are indented one tab deeper.
            let nested = line.starts_with("\t\t") || line.starts_with("        ");
            if !(in_suppressed && nested)
                && let Some(e) = chain.last_mut()
            {
                e.frames.push(frame);
            }
        } else {
            break;
        }
        i += 1;
    }
    for e in &mut chain {
        e.frames.reverse();
    }
    let mut top = chain.remove(0);
    // Java prints the direct cause first and the root cause last; the model
    // keeps the innermost (root) cause first.
    chain.reverse();
    top.causes = chain;
    Some((start, top))
}

// ---------------------------------------------------------------- Go

/// `panic: msg` or `fatal error: msg` at the start of a line: kind, message.
fn go_header(line: &str) -> Option<(String, String)> {
    if let Some(msg) = line.strip_prefix("panic: ") {
        // `[recovered]`, `[recovered, repanicked]` annotate re-panics.
        let msg = match msg.rfind(" [recovered") {
            Some(i) if msg.ends_with(']') => &msg[..i],
            _ => msg,
        };
        return Some(match msg.strip_prefix("runtime error: ") {
            Some(m) => ("runtime error".into(), m.to_string()),
            None => ("panic".into(), msg.to_string()),
        });
    }
    line.strip_prefix("fatal error: ")
        .map(|m| ("fatal error".into(), m.to_string()))
}

fn is_goroutine_line(line: &str) -> bool {
    line.starts_with("goroutine ") && line.ends_with("]:")
}

/// `\t/path/file.go:12 +0x2c`: the file and line.
fn go_location(line: &str) -> Option<(String, u32)> {
    if !line.starts_with('\t') {
        return None;
    }
    let t = line.trim();
    let t = match t.rsplit_once(" +0x") {
        Some((loc, _)) => loc,
        None => t,
    };
    let (file, n) = t.rsplit_once(':')?;
    Some((file.to_string(), n.parse().ok()?))
}

/// `main.(*Server).Start(0x0)` -> `main.(*Server).Start`;
/// `created by main.main in goroutine 1` -> `main.main`.
fn go_function(line: &str) -> String {
    if let Some(rest) = line.strip_prefix("created by ") {
        return rest
            .split(" in goroutine ")
            .next()
            .unwrap_or(rest)
            .to_string();
    }
    match line.rfind('(') {
        Some(i) if line.ends_with(')') && i > 0 => line[..i].to_string(),
        _ => line.to_string(),
    }
}

fn go_last(lines: &[String]) -> Option<(usize, Exception)> {
    let start = (0..lines.len())
        .rev()
        .find(|&i| go_header(&lines[i]).is_some())?;
    // A nested panic prints `panic: first` then `\tpanic: second`; the
    // outermost header comes first, which is where the report starts.
    let (kind, message) = go_header(&lines[start])?;
    let mut frames = Vec::new();
    // The panicking goroutine is printed first, within a few lines.
    let goroutine = (start + 1..lines.len().min(start + 8)).find(|&i| is_goroutine_line(&lines[i]));
    if let Some(g) = goroutine {
        let mut i = g + 1;
        while i + 1 < lines.len() {
            let func = &lines[i];
            if func.is_empty() || is_indented(func) || is_goroutine_line(func) {
                break;
            }
            let Some((file, line)) = go_location(&lines[i + 1]) else {
                break;
            };
            frames.push(Frame {
                file: Some(file),
                line: Some(line),
                function: Some(go_function(func)),
            });
            i += 2;
        }
    }
    frames.reverse();
    Some((
        start,
        Exception {
            language: "go".into(),
            kind,
            message,
            frames,
            causes: Vec::new(),
            fingerprint: String::new(),
        },
    ))
}

// ---------------------------------------------------------------- fingerprint

fn set_fingerprints(e: &mut Exception) {
    e.fingerprint = fingerprint(e);
    for c in &mut e.causes {
        set_fingerprints(c);
    }
}

fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Whether a frame is the application's own code rather than the standard
/// library, installed packages or the runtime.
fn in_application(language: &str, f: &Frame) -> bool {
    let file = f.file.as_deref().unwrap_or("");
    let func = f.function.as_deref().unwrap_or("");
    if file.is_empty() && func.is_empty() {
        return false;
    }
    match language {
        "python" => {
            !(file.contains("/lib/python")
                || file.contains("site-packages")
                || file.contains("dist-packages")
                || file.starts_with("<frozen"))
        }
        "rust" => {
            const STD: &[&str] = &[
                "std::",
                "core::",
                "alloc::",
                "__rust",
                "rust_begin_unwind",
                "__libc_start",
                "_start",
                "<std::",
                "<core::",
                "<alloc::",
                "<&",
                "__rustc::",
            ];
            !(file.contains("/rustc/")
                || file.contains("/.cargo/registry/")
                || file.contains("/library/std/")
                || file.contains("/library/core/")
                || STD.iter().any(|p| func.starts_with(p))
                // The C `main` shim and unresolved addresses.
                || func == "main"
                || func == "<unknown>")
        }
        "java" => {
            const STD: &[&str] = &[
                "java.", "javax.", "jdk.", "sun.", "com.sun.", "kotlin.", "scala.",
            ];
            !STD.iter().any(|p| func.starts_with(p))
        }
        "go" => {
            !(func.starts_with("runtime.")
                || file.contains("/go/src/")
                || file.contains("/libexec/src/")
                || file.contains("/pkg/mod/"))
        }
        _ => true,
    }
}

/// The failure a run killed by the OOM killer is grouped under when it
/// left no exception of its own: language `kernel`, type `OOMKilled`, and
/// `PROGRAM killed by the OOM killer` as its message, so each program's OOM
/// kills make one group; the limit and peak, which vary (and change units),
/// are left to the run's own record ([`crate::display::oom`]).
pub fn oom_kill(o: &crate::OomKill) -> Exception {
    let message = match &o.command {
        Some(c) => format!("{c} killed by the OOM killer"),
        None => "killed by the OOM killer".into(),
    };
    let mut e = Exception {
        language: "kernel".into(),
        kind: "OOMKilled".into(),
        message,
        frames: Vec::new(),
        causes: Vec::new(),
        fingerprint: String::new(),
    };
    e.fingerprint = fingerprint(&e);
    e
}

/// SHA-256 (first 16 hex) of the language, type and the application's own
/// frames (function and file base name, no line numbers, so small edits do
/// not split a group); without such frames, of the type and the message with
/// its variable parts normalized.
pub fn fingerprint(e: &Exception) -> String {
    let mut h = Sha256::new();
    h.update(e.language.as_bytes());
    h.update([0]);
    h.update(e.kind.as_bytes());
    h.update([0]);
    let mut any = false;
    for f in e.frames.iter().filter(|f| in_application(&e.language, f)) {
        any = true;
        h.update(f.function.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(basename(f.file.as_deref().unwrap_or("")).as_bytes());
        h.update([b'\n']);
    }
    if !any {
        h.update(b"message\0");
        h.update(normalize_message(&e.message).as_bytes());
    }
    crate::hex(&h.finalize()[..8])
}

/// Replaces the parts of a message that vary between occurrences of the same
/// failure: UUIDs, hex addresses and hashes, quoted strings, file paths,
/// numbers.
pub fn normalize_message(message: &str) -> String {
    let b = message.as_bytes();
    let mut out = String::with_capacity(message.len());
    let mut i = 0;
    let word_boundary =
        |i: usize| i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    while i < b.len() {
        let c = b[i];
        if word_boundary(i) && is_uuid_at(b, i) {
            out.push_str("<uuid>");
            i += 36;
            continue;
        }
        if c == b'0'
            && matches!(b.get(i + 1), Some(b'x' | b'X'))
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            out.push_str("<hex>");
            i += 2;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
            continue;
        }
        if matches!(c, b'\'' | b'"' | b'`')
            && word_boundary(i)
            && let Some(len) = b[i + 1..].iter().position(|&x| x == c)
        {
            out.push_str("<str>");
            i += len + 2;
            continue;
        }
        if let Some(len) = path_at(b, i) {
            out.push_str("<path>");
            i += len;
            continue;
        }
        if c.is_ascii_hexdigit() && word_boundary(i) {
            // A hex run of 8 or more with a digit in it: a hash or an id.
            let run = b[i..].iter().take_while(|x| x.is_ascii_hexdigit()).count();
            let ends_word = b
                .get(i + run)
                .is_none_or(|x| !(x.is_ascii_alphanumeric() || *x == b'_'));
            if run >= 8 && ends_word && b[i..i + run].iter().any(u8::is_ascii_digit) {
                out.push_str("<hex>");
                i += run;
                continue;
            }
        }
        if c.is_ascii_digit() {
            out.push_str("<n>");
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            continue;
        }
        // Copy one whole UTF-8 character.
        let len = message[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&message[i..i + len]);
        i += len;
    }
    out
}

/// The length of an unquoted absolute or home-relative path starting at
/// `b[i]` (`/var/data/x.csv`, `~/x`), without trailing punctuation, if
/// one starts there: after a space or an opening delimiter, never inside a
/// word (`km/h`, `1/2`).
fn path_at(b: &[u8], i: usize) -> Option<usize> {
    let starts = match b[i] {
        b'/' => true,
        b'~' => b.get(i + 1) == Some(&b'/'),
        _ => false,
    };
    let after_delimiter =
        i == 0 || b[i - 1].is_ascii_whitespace() || b"(=:[,<{".contains(&b[i - 1]);
    if !starts || !after_delimiter {
        return None;
    }
    let mut len = b[i..]
        .iter()
        .take_while(|&&x| !x.is_ascii_whitespace() && !b"'\"`),;]>}".contains(&x))
        .count();
    while len > 0 && b".:".contains(&b[i + len - 1]) {
        len -= 1;
    }
    // A lone `/` or `~/` is an operator or a word, not a path.
    let body = &b[i..i + len];
    (body.iter().filter(|x| x.is_ascii_alphanumeric()).count() > 0).then_some(len)
}

fn is_uuid_at(b: &[u8], i: usize) -> bool {
    let Some(s) = b.get(i..i + 36) else {
        return false;
    };
    s.iter().enumerate().all(|(j, &c)| {
        if matches!(j, 8 | 13 | 18 | 23) {
            c == b'-'
        } else {
            c.is_ascii_hexdigit()
        }
    })
}

#[cfg(test)]
mod tests;
