use super::*;
use proptest::prelude::*;
use std::path::PathBuf;
use std::process::Command;

/// Runs `python3 -c program` and returns its stderr (it must fail).
fn python_stderr(program: &str) -> Vec<u8> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(program)
        .env_remove("PYTHONSTARTUP")
        .output()
        .expect("python3 runs");
    assert!(!out.status.success(), "program should fail: {program}");
    out.stderr
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/exceptions")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn functions(e: &Exception) -> Vec<&str> {
    e.frames
        .iter()
        .filter_map(|f| f.function.as_deref())
        .collect()
}

const NESTED: &str = "
def parse(s):
    return int(s)

def main():
    parse('x1')

main()
";

#[test]
fn python_traceback_outermost_frame_first() {
    let e = parse(&python_stderr(NESTED)).unwrap();
    assert_eq!(e.language, "python");
    assert_eq!(e.kind, "ValueError");
    assert_eq!(e.message, "invalid literal for int() with base 10: 'x1'");
    assert_eq!(functions(&e), ["<module>", "main", "parse"]);
    assert_eq!(e.frames[0].line, Some(8));
    assert_eq!(e.frames[2].line, Some(3));
    assert_eq!(e.frames[0].file.as_deref(), Some("<string>"));
    assert_eq!(e.fingerprint.len(), 16);
    assert!(e.causes.is_empty());
}

#[test]
fn python_chained_exceptions_become_causes() {
    let program = "
def load():
    return {}['k']

def run():
    try:
        load()
    except KeyError as e:
        raise ValueError('bad 12') from e

try:
    run()
except ValueError:
    raise RuntimeError('giving up')
";
    let e = parse(&python_stderr(program)).unwrap();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("RuntimeError", "giving up")
    );
    let kinds: Vec<&str> = e.causes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["KeyError", "ValueError"], "root cause first");
    assert_eq!(e.causes[0].message, "'k'");
    // A cause's traceback stops where it was caught.
    assert_eq!(functions(&e.causes[0]), ["run", "load"]);
    assert_ne!(e.causes[0].fingerprint, e.fingerprint);
}

#[test]
fn python_syntax_error_without_header() {
    let e = parse(&python_stderr("def f(:\n  pass")).unwrap();
    assert_eq!(e.kind, "SyntaxError");
    assert_eq!(e.message, "invalid syntax");
    assert_eq!(e.frames.len(), 1);
    assert_eq!(e.frames[0].line, Some(1));
    assert_eq!(e.frames[0].function, None);
}

#[test]
fn python_exception_group_is_parsed_with_its_members() {
    let program = "
def f():
    raise ExceptionGroup('eg', [ValueError('a'), TypeError('b')])
f()
";
    let e = parse(&python_stderr(program)).unwrap();
    assert_eq!(e.kind, "ExceptionGroup");
    assert_eq!(e.message, "eg (2 sub-exceptions)");
    assert_eq!(functions(&e), ["<module>", "f"]);
    let members: Vec<&str> = e.causes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(members, ["ValueError", "TypeError"]);
}

#[test]
fn python_last_exception_wins_among_logs_and_garbage() {
    let program = "
import sys, traceback
sys.stderr.write('INFO starting\\n')
try:
    1/0
except ZeroDivisionError:
    traceback.print_exc()
sys.stderr.buffer.write(b'\\xff\\xfe not utf-8\\n')
sys.stderr.flush()
def boom():
    raise OSError(28, 'No space left on device')
boom()
";
    let mut stderr = b"cut in the middle of a line\n".to_vec();
    stderr.extend(python_stderr(program));
    stderr.extend(b"INFO shutting down\n");
    let e = parse(&stderr).unwrap();
    assert_eq!(e.kind, "OSError");
    assert_eq!(e.message, "[Errno 28] No space left on device");
    assert_eq!(functions(&e), ["<module>", "boom"]);
}

#[test]
fn python_tail_cut_inside_traceback_still_parses() {
    let stderr = python_stderr(NESTED);
    let text = String::from_utf8(stderr).unwrap();
    // Drop the header and half of the first frame line.
    let cut = text.find("File").unwrap() + 10;
    let e = parse(&text.as_bytes()[cut..]).unwrap();
    assert_eq!(e.kind, "ValueError");
    assert_eq!(functions(&e), ["main", "parse"]);
}

#[test]
fn python_fingerprint_ignores_line_numbers_and_message_values() {
    let a = parse(&python_stderr(NESTED)).unwrap();
    let shifted = format!("\n\n# a comment\n{}", NESTED.replace("'x1'", "'y2'"));
    let b = parse(&python_stderr(&shifted)).unwrap();
    assert_ne!(a.frames[0].line, b.frames[0].line);
    assert_eq!(a.fingerprint, b.fingerprint);
    let other = parse(&python_stderr(
        "def parse(s):\n    raise KeyError(s)\nparse(1)",
    ))
    .unwrap();
    assert_ne!(a.fingerprint, other.fingerprint);
}

#[test]
fn python_coloured_traceback_is_understood() {
    let coloured = b"\x1b[35mTraceback (most recent call last):\x1b[0m\n  File \x1b[35m\"/app/x.py\"\x1b[0m, line \x1b[35m3\x1b[0m, in \x1b[35m<module>\x1b[0m\n\x1b[1;35mValueError\x1b[0m: \x1b[35mno\x1b[0m\n";
    let e = parse(coloured).unwrap();
    assert_eq!((e.kind.as_str(), e.message.as_str()), ("ValueError", "no"));
    assert_eq!(e.frames[0].file.as_deref(), Some("/app/x.py"));
}

#[test]
fn rust_panic_current_format_without_backtrace() {
    let e = parse(&fixture("rust_1_95_no_backtrace.txt")).unwrap();
    assert_eq!(e.language, "rust");
    assert_eq!(e.kind, "panic");
    assert_eq!(e.message, "called `Option::unwrap()` on a `None` value");
    assert_eq!(e.frames.len(), 1);
    assert_eq!(e.frames[0].file.as_deref(), Some("p.rs"));
    assert_eq!(e.frames[0].line, Some(3));
}

#[test]
fn rust_panic_with_backtrace_has_outermost_first_frames() {
    for name in ["rust_1_95_backtrace.txt", "rust_1_95_backtrace_full.txt"] {
        let e = parse(&fixture(name)).unwrap();
        assert_eq!(
            e.message, "called `Option::unwrap()` on a `None` value",
            "{name}"
        );
        let funcs = functions(&e);
        let main = funcs.iter().position(|f| *f == "p::main").unwrap();
        let parse_fn = funcs.iter().position(|f| *f == "p::parse").unwrap();
        assert!(main < parse_fn, "{name}: {funcs:?}");
        let f = &e.frames[parse_fn];
        assert!(f.file.as_deref().unwrap().ends_with("p.rs"), "{name}");
        assert_eq!(f.line, Some(3), "{name}");
        assert!(
            funcs.iter().all(|f| !f.contains("::h") && !f.contains('[')),
            "{funcs:?}"
        );
    }
    // Same in-application frames, so the same group, with or without `full`.
    let a = parse(&fixture("rust_1_95_backtrace.txt")).unwrap();
    let b = parse(&fixture("rust_1_95_backtrace_full.txt")).unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
}

#[test]
fn rust_panic_old_format() {
    let e = parse(&fixture("rust_1_65_backtrace.txt")).unwrap();
    assert_eq!(
        e.message,
        "index out of bounds: the len is 3 but the index is 7"
    );
    assert_eq!(functions(&e)[0], "core::ops::function::FnOnce::call_once");
    let main = e
        .frames
        .iter()
        .find(|f| f.function.as_deref() == Some("demo::main"))
        .unwrap();
    assert_eq!(
        (main.file.as_deref(), main.line),
        (Some("./src/main.rs"), Some(3))
    );

    let e = parse(&fixture("rust_1_70_no_backtrace.txt")).unwrap();
    assert!(
        e.message
            .starts_with("called `Result::unwrap()` on an `Err` value: Os { code: 2")
    );
    assert_eq!(e.frames[0].file.as_deref(), Some("src/worker.rs"));
    assert_eq!(e.frames[0].line, Some(41));
}

#[test]
fn rust_panic_from_a_real_program() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("boom.rs");
    std::fs::write(
        &src,
        "fn main() {\n    let v: Vec<u32> = Vec::new();\n    println!(\"{}\", v[3]);\n}\n",
    )
    .unwrap();
    let exe = dir.path().join("boom");
    let status = Command::new("rustc")
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new(&exe)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let e = parse(&out.stderr).unwrap();
    assert_eq!(e.kind, "panic");
    assert!(e.message.contains("index out of bounds"), "{}", e.message);
    assert_eq!(e.frames[0].line, Some(3));
}

#[test]
fn java_exception_with_causes() {
    let e = parse(&fixture("java_caused_by.txt")).unwrap();
    assert_eq!(e.language, "java");
    assert_eq!(e.kind, "java.lang.IllegalStateException");
    assert_eq!(e.message, "inner failed");
    assert_eq!(functions(&e), ["Main.main", "Main.inner"]);
    assert_eq!(e.frames[1].file.as_deref(), Some("Main.java"));
    assert_eq!(e.frames[1].line, Some(9));
    assert_eq!(e.causes.len(), 1);
    assert_eq!(e.causes[0].kind, "java.lang.IllegalArgumentException");
    assert_eq!(e.causes[0].message, "bad value: 42");
    assert_eq!(functions(&e.causes[0]), ["Main.inner", "Main.deeper"]);

    let launcher = parse(&fixture("java_single_file_launcher.txt")).unwrap();
    assert_eq!(
        launcher.causes[0].frames[0].function.as_deref(),
        Some("com.sun.tools.javac.launcher.Main.main")
    );
    // JDK frames do not count, so both traces group together.
    assert_eq!(launcher.fingerprint, e.fingerprint);
}

#[test]
fn go_panics() {
    let e = parse(&fixture("go_panic.txt")).unwrap();
    assert_eq!((e.language.as_str(), e.kind.as_str()), ("go", "panic"));
    assert_eq!(e.message, "something went wrong: code 42");
    assert_eq!(functions(&e), ["main.main", "main.process"]);
    assert_eq!(e.frames[1].line, Some(12));

    let e = parse(&fixture("go_nil_pointer.txt")).unwrap();
    assert_eq!(e.kind, "runtime error");
    assert_eq!(
        e.message,
        "invalid memory address or nil pointer dereference"
    );
    assert_eq!(functions(&e), ["main.main", "main.(*Server).Start"]);
    assert_eq!(
        e.frames[1].file.as_deref(),
        Some("/home/user/app/server.go")
    );

    let e = parse(&fixture("go_goroutine.txt")).unwrap();
    assert_eq!(
        functions(&e),
        ["main.main", "main.worker"],
        "only the panicking goroutine"
    );

    let e = parse(&fixture("go_fatal_deadlock.txt")).unwrap();
    assert_eq!(e.kind, "fatal error");
    assert_eq!(e.message, "all goroutines are asleep - deadlock!");
    assert_eq!(functions(&e), ["main.main"]);
}

#[test]
fn nothing_to_find() {
    assert_eq!(parse(b""), None);
    assert_eq!(parse(b"error: could not open file\nexiting with 1\n"), None);
    assert_eq!(parse(b"\xff\xfe\xfd"), None);
}

#[test]
fn message_normalization() {
    assert_eq!(
        normalize_message(
            "user 42 at 0x7ffd1234 missing 'a.txt' id 123e4567-e89b-12d3-a456-426614174000 sha deadbeef1234"
        ),
        "user <n> at <hex> missing <str> id <uuid> sha <hex>"
    );
    assert_eq!(normalize_message("don't stop"), "don't stop");
    assert_eq!(normalize_message("café 3.5"), "café <n>");
    assert_eq!(
        normalize_message("cannot open /var/data/run-17.csv: denied (~/cache/x.db)."),
        "cannot open <path>: denied (<path>)."
    );
    assert_eq!(
        normalize_message("speed 3 km/h, a / b"),
        "speed <n> km/h, a / b"
    );
    // Different files, same failure: one group.
    let a = parse(b"panic: cannot read /srv/a/input-1.json: EOF\n").unwrap();
    let b = parse(b"panic: cannot read /home/u/b.json: EOF\n").unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
    let c = parse(b"panic: cannot write /home/u/b.json: EOF\n").unwrap();
    assert_ne!(a.fingerprint, c.fingerprint);
    // Without application frames, messages differing only in values group.
    let a = parse(b"panic: timeout after 30s talking to 10.0.0.1\n").unwrap();
    let b = parse(b"panic: timeout after 45s talking to 10.0.0.7\n").unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
}

/// Fragments of real traceback syntax, so random input reaches deep paths.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Traceback (most recent call last):".to_string()),
        Just("  + Exception Group Traceback (most recent call last):".to_string()),
        Just("  |   File \"x.py\", line 3, in f".to_string()),
        Just("  +-+---------------- 1 ----------------".to_string()),
        Just("    | ValueError: a".to_string()),
        Just("    +------------------------------------".to_string()),
        Just("  File \"x.py\", line 9, in <module>".to_string()),
        Just("During handling of the above exception, another exception occurred:".to_string()),
        Just("ValueError: boom".to_string()),
        Just("thread 'main' panicked at src/main.rs:2:5:".to_string()),
        Just("thread 'main' panicked at 'msg".to_string()),
        Just("stack backtrace:".to_string()),
        Just("   3: 0x55 - p::main::h0123456789abcdef".to_string()),
        Just("             at ./p.rs:3:7".to_string()),
        Just("Exception in thread \"main\" java.lang.X: y".to_string()),
        Just("\tat a.B.c(B.java:1)".to_string()),
        Just("Caused by: java.lang.Y".to_string()),
        Just("panic: runtime error: x [recovered]".to_string()),
        Just("goroutine 1 [running]:".to_string()),
        Just("main.main()".to_string()),
        Just("\t/x/main.go:3 +0x1".to_string()),
        ".{0,20}",
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn normalization_never_panics(s in "(?s).{0,200}") {
        let _ = normalize_message(&s);
    }

    #[test]
    fn arbitrary_traceback_fragments_never_panic(lines in proptest::collection::vec(fragment(), 0..40)) {
        let text = lines.join("\n");
        if let Some(e) = parse(text.as_bytes()) {
            prop_assert_eq!(e.fingerprint.len(), 16);
        }
    }
}

#[test]
fn oom_kills_group_by_program_whatever_the_limit_and_peak() {
    let kill = |command: &str, limit: u64, peak: u64| crate::OomKill {
        root: true,
        pids: vec![7],
        command: Some(command.into()),
        kills: 1,
        limit: Some(limit),
        peak: Some(peak),
        cgroup: None,
        source: crate::OomSource::CgroupV1,
    };
    let a = oom_kill(&kill("python3", 64 << 20, 64 << 20));
    let b = oom_kill(&kill("python3", 1 << 30, (1 << 30) - 4096));
    let c = oom_kill(&kill("java", 64 << 20, 64 << 20));
    assert_eq!(
        (a.language.as_str(), a.kind.as_str()),
        ("kernel", "OOMKilled")
    );
    assert_eq!(a.message, "python3 killed by the OOM killer");
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.fingerprint, c.fingerprint);
}
