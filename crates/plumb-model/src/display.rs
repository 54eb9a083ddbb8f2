//! The one way plumb shows durations, sizes and exit statuses to people,
//! shared by the CLI's tables and the dashboard so the same run reads the
//! same everywhere. Durations are written in the syntax
//! [`crate::parse_duration_ns`] reads back.

/// A duration for people: `750ns`, `42us`, `250ms`, `4.2s`, `59s`, `1m59s`,
/// `2h10m`, `3d4h`. Below a minute it keeps a tenth of a second while under
/// ten seconds; above it keeps the two largest units. Below a millisecond
/// (spans often are) it keeps whole microseconds, or nanoseconds below
/// one. Negative values show as `0s`.
pub fn duration(ns: i64) -> String {
    let ns = ns.max(0);
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}us", ns / 1_000);
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", ns / 1_000_000);
    }
    if ns < 10_000_000_000 {
        // Tenths, truncated, so a value never shows as the next unit up.
        let tenths = ns / 100_000_000;
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let s = ns / 1_000_000_000;
    let (m, s) = (s / 60, s % 60);
    if m == 0 {
        return format!("{s}s");
    }
    let (h, m) = (m / 60, m % 60);
    if h == 0 {
        return format!("{m}m{s:02}s");
    }
    let (d, h) = (h / 24, h % 24);
    if d == 0 {
        return format!("{h}h{m:02}m");
    }
    format!("{d}d{h}h")
}

/// A size in bytes for people, binary units: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The line that marks where a run's output over its cap was dropped, as
/// `plumb logs` and the dashboard show it in place.
pub fn output_gap(dropped: u64, cap: u64) -> String {
    format!(
        "[plumb: {} of output dropped here: over the run's output cap of {}, the first and the last {} are kept]",
        size(dropped),
        size(cap),
        size(cap / 2)
    )
}

/// What `plumb logs`, `plumb show` and the dashboard say about a run that
/// started before the store's retention horizon (output older than it was
/// dropped by `[retention] output`); `None` when the run's output is whole.
pub fn output_retention(
    started: crate::Timestamp,
    horizon: Option<crate::Timestamp>,
) -> Option<String> {
    let h = horizon.filter(|h| started < *h)?;
    Some(format!(
        "output written before {} was removed by the collector's retention ([retention] output)",
        h.to_rfc3339_secs()
    ))
}

/// How a process ended, for people: its exit code (`0`, `1`), or the
/// signal that killed it by name (`SIGKILL`), or `-` while unknown.
pub fn exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => signal_name(s),
        (None, None) => "-".into(),
    }
}

/// [`exit`], except `OOM` for a run whose own process the kernel's OOM
/// killer killed: the lists' exit column.
pub fn exit_or_oom(code: Option<i32>, signal: Option<i32>, oom_killed: bool) -> String {
    if oom_killed && code.is_none() {
        "OOM".into()
    } else {
        exit(code, signal)
    }
}

/// How a run ended, as `plumb show` and the run page both word it:
/// `code 1`, `signal 9 (SIGKILL), core dumped`, or `unknown`.
pub fn exit_status(e: &crate::ExitStatus) -> String {
    match (e.code, e.signal) {
        (Some(c), _) => format!("code {c}"),
        (None, Some(sig)) => format!(
            "signal {sig} ({}){}",
            e.signal_name.clone().unwrap_or_else(|| signal_name(sig)),
            if e.core_dumped { ", core dumped" } else { "" }
        ),
        (None, None) => "unknown".into(),
    }
}

/// Which attempt a run is (`2 of 3`), or `None` for a run without
/// retries.
pub fn attempt(run: &crate::Run) -> Option<String> {
    (run.max_attempts.is_some() || run.attempt > 1).then(|| {
        let max = run
            .max_attempts
            .map_or(String::new(), |m| format!(" of {m}"));
        format!("{}{max}", run.attempt)
    })
}

/// What a run wrote, in one line: bytes per stream (or combined), lines,
/// and what was dropped over the cap.
pub fn output_summary(o: &crate::OutputSummary) -> String {
    let tty = |t: bool| if t { " (tty)" } else { "" };
    let streams = if o.combined {
        format!(
            "stdout and stderr combined {}{} (they went to the same place)",
            size(o.stdout_bytes),
            tty(o.stdout_tty)
        )
    } else {
        format!(
            "stdout {}{}, stderr {}{}",
            size(o.stdout_bytes),
            tty(o.stdout_tty),
            size(o.stderr_bytes),
            tty(o.stderr_tty)
        )
    };
    let dropped = if o.dropped_bytes > 0 {
        format!(", {} dropped over the cap", size(o.dropped_bytes))
    } else {
        String::new()
    };
    format!("{streams}, {} lines{dropped}", o.lines)
}

/// The story of an eviction, one line per step: the warning, how the
/// run ended, whom the signal reached, the notice itself.
pub fn eviction(e: &crate::Eviction) -> Vec<String> {
    let mut lines = vec![format!(
        "warned {} by {}, sent {}, grace {}",
        e.warned,
        e.source,
        e.signal,
        duration(e.grace_ns)
    )];
    if let Some(ended) = e.ended {
        lines.push(format!(
            "ended {} ({} after the warning){}",
            ended,
            duration(ended.as_nanos() - e.warned.as_nanos()),
            match (e.grace_expired, e.killed_group) {
                (true, true) => ": grace ran out, process group SIGKILLed",
                (true, false) => ": grace ran out, SIGKILLed",
                (false, _) => ", within the grace",
            }
        ));
    }
    if e.signalled > 0 {
        lines.push(format!(
            "{} signalled {} process{}, {} SIGKILLed",
            e.signal,
            e.signalled,
            if e.signalled == 1 { "" } else { "es" },
            e.killed
        ));
    }
    if let Some(d) = &e.detail {
        lines.push(format!("notice {d}"));
    }
    lines
}

/// Why the kernel killed the run, when its OOM killer did:
/// `killed by the OOM killer (limit 64.0 MiB, peak 64.0 MiB, from the
/// v1 memory cgroup)`, or for a worker `a process of the run (pid 7,
/// python3) killed by the OOM killer (...)`. Unknown values are left out,
/// never shown as zero.
pub fn oom(o: &crate::OomKill) -> String {
    let mut facts = Vec::new();
    if let Some(l) = o.limit {
        facts.push(format!("limit {}", size(l)));
    }
    if let Some(p) = o.peak {
        facts.push(format!("peak {}", size(p)));
    }
    facts.push(format!("from {}", o.source.describe()));
    let facts = facts.join(", ");
    if o.root {
        return format!("killed by the OOM killer ({facts})");
    }
    let who = match (o.pids.as_slice(), &o.command) {
        ([], None) => String::new(),
        ([], Some(c)) => format!(" ({c})"),
        (pids, c) => {
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            let pid = format!(
                "pid{} {}",
                if pids.len() == 1 { "" } else { "s" },
                pids.join(", ")
            );
            match c {
                Some(c) => format!(" ({pid}, {c})"),
                None => format!(" ({pid})"),
            }
        }
    };
    format!("a process of the run{who} killed by the OOM killer ({facts})")
}

/// Processes a run left behind: the heading and one line per process.
pub fn orphans(run: &crate::Run) -> Option<(String, Vec<String>)> {
    (!run.orphans.is_empty()).then(|| {
        (
            format!(
                "{} left running at the end{}",
                run.orphans.len(),
                if run.orphans_killed { ", killed" } else { "" }
            ),
            run.orphans
                .iter()
                .map(|o| format!("pid {} {}", o.pid, o.command))
                .collect(),
        )
    })
}

/// A signal's name (`SIGTERM`), or `SIG<n>` for one without a name.
pub fn signal_name(signal: i32) -> String {
    match signal_known(signal) {
        Some(name) => name.into(),
        None => format!("SIG{signal}"),
    }
}

/// The name of a standard Linux signal by its number (`SIGKILL` for 9), or
/// `None`. One table for every crate: the recorder names the signals it
/// sees (and checks this table against the platform's own numbers in its
/// tests), and a collector names signals from other machines without
/// depending on its own platform.
pub fn signal_known(signal: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    let k = usize::try_from(signal).ok()?.checked_sub(1)?;
    NAMES.get(k).copied()
}

/// A post-mortem as text lines, the way `plumb show --locals` and the
/// dashboard print it: a heading (where, which exception), then each frame
/// innermost last, as a traceback reads, with its locals indented under it.
pub fn postmortem(pm: &crate::postmortem::PostMortem) -> Vec<String> {
    let mut out = vec![format!(
        "{}: {} (pid {}, {})",
        pm.kind, pm.message, pm.pid, pm.origin
    )];
    if pm.frames_omitted > 0 {
        out.push(format!("  ... {} outer frames left out", pm.frames_omitted));
    }
    for f in &pm.frames {
        out.push(format!("  {}:{} in {}", f.file, f.line, f.function));
        for l in &f.locals {
            out.push(format!("      {} = {}", l.name, l.value));
        }
    }
    out
}

/// Which timeout stopped a run and how, in one line.
pub fn timeout(t: &crate::stack::Timeout) -> String {
    let mut line = format!(
        "{} {} fired at {}",
        t.kind.flag(),
        duration(t.limit_ns),
        t.fired
    );
    if let Some(b) = &t.basis {
        line.push_str(&format!(" ({b})"));
    }
    line.push_str(&format!(
        "; {} to {} process{}, grace {}",
        t.signal,
        t.signalled,
        if t.signalled == 1 { "" } else { "es" },
        duration(t.grace_ns)
    ));
    if t.grace_expired {
        line.push_str(&format!(", grace ran out: {} SIGKILLed", t.killed));
    }
    if t.snapshot.is_none() {
        line.push_str("; no stack snapshot");
    }
    line
}

/// Parses a size: `512`, `64K`, `10M`, `1G`, `1GiB` (units are powers of
/// 1024, with or without `B`/`iB`) into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("`{s}` is not a size: expected a number and an optional unit (K, M, G)")
    })?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        other => {
            return Err(format!(
                "`{s}`: unknown size unit `{other}` (use K, M, G or T)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_duration_ns;
    use proptest::prelude::*;

    #[test]
    fn a_run_is_described_once_for_the_cli_and_the_page() {
        let e = crate::ExitStatus {
            signal: Some(9),
            core_dumped: true,
            ..Default::default()
        };
        assert_eq!(exit_status(&e), "signal 9 (SIGKILL), core dumped");
        let e = crate::ExitStatus {
            code: Some(3),
            ..Default::default()
        };
        assert_eq!(exit_status(&e), "code 3");
        let o = crate::OutputSummary {
            stdout_bytes: 2048,
            stderr_bytes: 5,
            lines: 7,
            dropped_bytes: 1 << 20,
            stdout_tty: true,
            ..Default::default()
        };
        assert_eq!(
            output_summary(&o),
            format!(
                "stdout {} (tty), stderr {}, 7 lines, {} dropped over the cap",
                size(2048),
                size(5),
                size(1 << 20)
            )
        );
        let ev = crate::Eviction {
            warned: crate::Timestamp::from_nanos(1_000_000_000),
            source: "SIGTERM".into(),
            signal: "SIGTERM".into(),
            grace_ns: 5_000_000_000,
            ended: Some(crate::Timestamp::from_nanos(7_000_000_000)),
            grace_expired: true,
            killed_group: true,
            signalled: 2,
            killed: 1,
            detail: None,
        };
        let lines = eviction(&ev);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[1].ends_with("(6.0s after the warning): grace ran out, process group SIGKILLed"),
            "{lines:?}"
        );
        assert_eq!(lines[2], "SIGTERM signalled 2 processes, 1 SIGKILLed");
    }

    #[test]
    fn one_duration_reads_the_same_everywhere() {
        assert_eq!(duration(119_000_000_000), "1m59s");
        assert_eq!(duration(250_000_000), "250ms");
        assert_eq!(duration(4_260_000_000), "4.2s");
        assert_eq!(duration(42_000_000_000), "42s");
        assert_eq!(duration(7_800_000_000_000), "2h10m");
        assert_eq!(
            duration(3 * 86_400_000_000_000 + 4 * 3_600_000_000_000),
            "3d4h"
        );
        assert_eq!(duration(-5), "0s");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(750), "750ns");
        assert_eq!(duration(42_500), "42us");
    }

    #[test]
    fn sizes_and_exits() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        assert_eq!(exit(Some(1), None), "1");
        assert_eq!(exit(None, Some(9)), "SIGKILL");
        assert_eq!(exit(None, Some(40)), "SIG40");
        assert_eq!(exit(None, None), "-");
    }

    proptest! {
        /// What the formatter writes, the parser reads back, to within the
        /// precision the formatter kept (its last unit).
        #[test]
        fn formatted_durations_parse_back(ns in 0i64..(400 * 86_400_000_000_000)) {
            let text = duration(ns);
            let back = parse_duration_ns(&text).unwrap();
            let precision = if ns < 1_000 {
                1
            } else if ns < 1_000_000 {
                1_000
            } else if ns < 1_000_000_000 {
                1_000_000
            } else if ns < 10_000_000_000 {
                100_000_000
            } else if ns < 3_600_000_000_000 {
                1_000_000_000
            } else if ns < 86_400_000_000_000 {
                60_000_000_000
            } else {
                3_600_000_000_000
            };
            prop_assert!(back <= ns && ns - back < precision, "{ns} -> {text} -> {back}");
        }

        /// Any duration written as units parses to the sum of its parts.
        #[test]
        fn compound_durations_add_up(h in 0i64..100, m in 0i64..60, s in 0i64..60, ms in 0i64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let want = ((h * 60 + m) * 60 + s) * 1_000_000_000 + ms * 1_000_000;
            prop_assert_eq!(parse_duration_ns(&text).unwrap(), want);
        }
    }
}
