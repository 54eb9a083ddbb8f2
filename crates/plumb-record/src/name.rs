//! The default name of a run, derived from its command line.
//!
//! A run's name groups it with the earlier runs of the same job (slow-run
//! baselines, error groups, `plumb ls NAME`), so it should name the job, not
//! the interpreter: `python3 train.py` is `train`, not `python3`. Only the
//! interpreters and wrappers below are looked through; anything else is
//! named after the program's base name, as before.

use std::ffi::OsString;
use std::path::Path;

/// The default name for a run of `argv` (`--name` overrides it).
///
/// - Python (`python`, `python3`, `python3.12`, `pypy3`): the script's stem,
///   or the module of `-m`; interpreter flags are skipped, with the value of
///   those that take one (`-W x`, `-X y`). `-c CODE` keeps the
///   interpreter's name.
/// - `node`/`deno`/`bun`, `ruby`, `perl`, `Rscript`, `bash`/`sh`/`zsh`/
///   `dash`/`ksh`: the script's stem; `-e`/`-c`/`-p` code keeps the name.
/// - `java -jar app.jar`: `app`; `java com.x.Main`: `com.x.Main`.
/// - `env [VAR=value]... CMD`, `uv run CMD`, `nice`/`nohup`/`time CMD`: the
///   name of CMD.
pub fn default_name(argv: &[OsString]) -> String {
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    name_of(&args, 0)
}

/// How many wrappers deep the name is looked for; a command line is not a
/// place for recursion without end (`env env env ...` is still bounded by
/// its length, but there is no reason to look further).
const MAX_DEPTH: usize = 8;

fn base(program: &str) -> &str {
    Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program)
}

fn stem(script: &str) -> String {
    let p = Path::new(script);
    let s = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if s.is_empty() { script.to_string() } else { s }
}

fn is_python(b: &str) -> bool {
    let rest = b.strip_prefix("python").or_else(|| b.strip_prefix("pypy"));
    rest.is_some_and(|r| r.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

fn name_of(args: &[String], depth: usize) -> String {
    let Some(program) = args.first() else {
        return String::new();
    };
    let b = base(program);
    let fallback = || b.to_string();
    let rest = &args[1..];
    if depth >= MAX_DEPTH {
        return fallback();
    }
    let wrapped =
        |i: usize| -> Option<String> { (i < rest.len()).then(|| name_of(&rest[i..], depth + 1)) };
    let found = match b {
        "env" => {
            // Options, then VAR=value assignments, then the command.
            let mut i = 0;
            while i < rest.len() {
                let a = &rest[i];
                if a == "-u" || a == "--unset" || a == "-C" || a == "--chdir" {
                    i += 2;
                } else if a.starts_with('-') || a.contains('=') {
                    i += 1;
                } else {
                    break;
                }
            }
            wrapped(i)
        }
        "uv" | "poetry" | "pipenv" | "pdm" | "hatch"
            if rest.first().is_some_and(|a| a == "run") =>
        {
            let mut i = 1;
            while i < rest.len() && rest[i].starts_with('-') {
                // `--with X`, `--python X`, `--env-file X`: values follow.
                let takes_value = matches!(
                    rest[i].as_str(),
                    "--with"
                        | "--python"
                        | "-p"
                        | "--env-file"
                        | "--project"
                        | "--directory"
                        | "--extra"
                        | "--group"
                        | "--package"
                        | "--from"
                        | "--index"
                );
                i += if takes_value { 2 } else { 1 };
            }
            // `uv run x.py` runs the script with the project's Python.
            match rest.get(i) {
                Some(script) if script.ends_with(".py") => Some(stem(script)),
                _ => wrapped(i),
            }
        }
        "nice" | "nohup" | "time" | "exec" | "stdbuf" | "ionice" | "taskset" => {
            let mut i = 0;
            while i < rest.len() && rest[i].starts_with('-') {
                // `nice -n 5`: the value of -n follows unless attached.
                i += if rest[i] == "-n" { 2 } else { 1 };
            }
            wrapped(i)
        }
        _ if is_python(b) => python(rest),
        "node" | "nodejs" | "deno" | "bun" | "ts-node" | "tsx" => script_after_flags(
            rest,
            &[
                "-r",
                "--require",
                "--import",
                "--loader",
                "--experimental-loader",
            ],
            &["-e", "--eval", "-p", "--print"],
            &["run"],
        ),
        "ruby" | "perl" => script_after_flags(rest, &["-I", "-r"], &["-e", "-E"], &[]),
        "Rscript" => script_after_flags(rest, &[], &["-e"], &[]),
        "bash" | "sh" | "zsh" | "dash" | "ksh" => {
            script_after_flags(rest, &["-o", "+o", "-O", "+O"], &["-c"], &[])
        }
        "java" => java(rest),
        _ => None,
    };
    found.filter(|n| !n.is_empty()).unwrap_or_else(fallback)
}

/// The Python script's stem or `-m` module; `None` for `-c` or an
/// interactive interpreter.
fn python(rest: &[String]) -> Option<String> {
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        if a == "--" {
            return rest.get(i + 1).map(|s| stem(s));
        }
        if a == "-" || !a.starts_with('-') {
            return (a != "-").then(|| stem(a));
        }
        if a.starts_with("--") {
            // `--check-hash-based-pycs MODE` is the one long option with a
            // value; the others (`--version`, `--help`) mean no script.
            i += if a == "--check-hash-based-pycs" { 2 } else { 1 };
            continue;
        }
        // A cluster of short flags such as `-uB`, `-Wignore` or `-mpkg`.
        let flags = &a[1..];
        let mut value_next = false;
        for (pos, c) in flags.char_indices() {
            match c {
                'c' => return None,
                'm' | 'W' | 'X' => {
                    let attached = &flags[pos + 1..];
                    let value = if attached.is_empty() {
                        value_next = true;
                        rest.get(i + 1).cloned()
                    } else {
                        Some(attached.to_string())
                    };
                    if c == 'm' {
                        return value;
                    }
                    break;
                }
                _ => {}
            }
        }
        i += if value_next { 2 } else { 1 };
    }
    None
}

/// The first argument that is not an option, as a script stem. `valued`
/// options take the next argument; `code` options mean the program is
/// given inline, so there is no script; `subcommands` are skipped
/// (`deno run x.ts`).
fn script_after_flags(
    rest: &[String],
    valued: &[&str],
    code: &[&str],
    subcommands: &[&str],
) -> Option<String> {
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i].as_str();
        if a == "--" {
            return rest.get(i + 1).map(|s| stem(s));
        }
        if code.contains(&a) {
            return None;
        }
        if valued.contains(&a) {
            i += 2;
        } else if a.starts_with('-') || a.starts_with('+') || (i == 0 && subcommands.contains(&a)) {
            i += 1;
        } else {
            return Some(stem(a));
        }
    }
    None
}

/// `java -jar app.jar` is `app`; `java [options] com.x.Main` is the class.
fn java(rest: &[String]) -> Option<String> {
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i].as_str();
        match a {
            "-jar" => return rest.get(i + 1).map(|s| stem(s)),
            "-cp" | "-classpath" | "--class-path" | "-p" | "--module-path" | "--add-modules" => {
                i += 2
            }
            "-m" | "--module" => {
                // `-m module/com.x.Main`: the main class names the job.
                return rest
                    .get(i + 1)
                    .map(|m| m.rsplit('/').next().unwrap_or(m).to_string());
            }
            _ if a.starts_with('-') => i += 1,
            _ => return Some(a.to_string()),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(cmd: &str) -> String {
        let argv: Vec<OsString> = cmd.split(' ').map(OsString::from).collect();
        default_name(&argv)
    }

    #[test]
    fn names_come_from_the_script_or_module_not_the_interpreter() {
        let table = [
            ("python3 train.py", "train"),
            ("/usr/bin/python3 x.py", "x"),
            ("python train.py --epochs 3", "train"),
            ("python3.12 jobs/etl.py", "etl"),
            ("python -m pkg.tool --flag", "pkg.tool"),
            ("python3 -mpkg.tool", "pkg.tool"),
            ("python3 -u train.py", "train"),
            ("python3 -uB -O train.py", "train"),
            ("python3 -W ignore train.py", "train"),
            ("python3 -Wignore train.py", "train"),
            ("python3 -X dev -X importtime train.py", "train"),
            ("python3 -u -m pkg.tool", "pkg.tool"),
            ("python3 -c print(1)", "python3"),
            ("python3 -uc print(1)", "python3"),
            ("python3", "python3"),
            ("python3 -", "python3"),
            ("python3 -- train.py", "train"),
            ("pypy3 bench.py", "bench"),
            ("node server.js", "server"),
            ("node --require dotenv/config server.js", "server"),
            ("node -e 1", "node"),
            ("deno run --allow-net main.ts", "main"),
            ("ruby x.rb", "x"),
            ("ruby -I lib x.rb", "x"),
            ("perl -w fix.pl", "fix"),
            ("bash deploy.sh prod", "deploy"),
            ("sh x.sh", "x"),
            ("bash -e -o pipefail deploy.sh", "deploy"),
            ("sh -c echo", "sh"),
            ("bash", "bash"),
            ("java -jar app.jar --port 8080", "app"),
            ("java -Xmx4g -jar build/libs/app-1.0.jar", "app-1.0"),
            ("java com.x.Main", "com.x.Main"),
            ("java -cp lib/* com.x.Main arg", "com.x.Main"),
            ("Rscript fit.R", "fit"),
            ("Rscript --vanilla fit.R", "fit"),
            ("Rscript -e 1", "Rscript"),
            ("uv run x.py", "x"),
            ("uv run --with numpy python train.py", "train"),
            ("env FOO=1 python x.py", "x"),
            ("env -u HOME FOO=1 python3 -u x.py", "x"),
            ("nice -n 5 python3 train.py", "train"),
            ("env FOO=1", "env"),
            ("/usr/local/bin/make -j4", "make"),
            ("./run-all", "run-all"),
            ("sleep 1", "sleep"),
        ];
        for (cmd, want) in table {
            assert_eq!(name(cmd), want, "{cmd}");
        }
    }

    proptest! {
        /// Whatever follows, a program that is not an interpreter or
        /// wrapper is named after its base name, and no command line gives
        /// an empty name or panics.
        #[test]
        fn other_programs_keep_their_base_name(args in proptest::collection::vec("[-a-zA-Z0-9=./]{0,8}", 0..6)) {
            let mut argv: Vec<OsString> = vec!["/opt/tool/bin/mytool".into()];
            argv.extend(args.iter().map(OsString::from));
            prop_assert_eq!(default_name(&argv), "mytool");
            for interp in ["python3", "env", "java", "node", "bash", "uv"] {
                let mut argv: Vec<OsString> = vec![interp.into()];
                argv.extend(args.iter().map(OsString::from));
                prop_assert!(!default_name(&argv).is_empty());
            }
        }
    }
}
