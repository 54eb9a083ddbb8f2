//! What the node went through while a run ran: the difference between two
//! readings of the node's cheap kernel counters, one taken by `plumb run`
//! just before the command starts and one just after it ends.
//!
//! [`NodeConditions::between`] turns two [`NodeHealth`] readings into the
//! run's [`NodeConditions`]: PSI stall time per resource, thermal-throttle
//! events, I/O errors per device, OOM kills on the node, and the CPU
//! frequency at the end. A counter that could not be read at either end, or
//! that went backwards (reset, wrapped, a device replaced), is
//! [`Reading::Unavailable`] with the reason, never zero and never negative.
//!
//! [`NodeConditions::facts`] says each in one line for people, and marks
//! which are notable by the thresholds below; `plumb show`, the run page and
//! `plumb diff` show only the notable ones.
//!
//! ```
//! use plumb_model::conditions::{NodeConditions, STALL_NOTABLE_SHARE};
//! use plumb_model::health::{NodeHealth, Reading, Psi, PsiResource, PsiLine, HEALTH_VERSION};
//! use plumb_model::Timestamp;
//! let at = |ns, mem_us| NodeHealth {
//!     version: HEALTH_VERSION,
//!     read_at: Timestamp::from_nanos(ns),
//!     psi: Reading::Ok { value: Psi { memory: Some(PsiResource {
//!         some: PsiLine { total_us: mem_us, ..Default::default() }, full: None }),
//!         ..Default::default() } },
//!     oom_kills: Reading::unavailable("not read"),
//!     memory_errors: Reading::unavailable("not read"),
//!     temperatures: Reading::unavailable("not read"),
//!     throttling: Reading::unavailable("not read"),
//!     cpu_freq: Reading::unavailable("not read"),
//!     network: Reading::unavailable("not read"),
//!     io_errors: Reading::unavailable("not read"),
//!     smart: Reading::unavailable("not read"),
//! };
//! // 100 s of run, 12.3 s of memory stall.
//! let c = NodeConditions::between(&at(0, 5), &at(100_000_000_000, 12_300_005));
//! let notable = c.notable(0);
//! assert_eq!(notable[0].text, "memory pressure: 12.3 s stalled (12.3% of the run)");
//! assert!(STALL_NOTABLE_SHARE <= 0.123);
//! ```

use crate::health::{CpuFreq, IoErrors, NodeHealth, Reading};
use serde::{Deserialize, Serialize};

/// A resource's stall ("some" tasks stalled) is notable from this share of
/// the run's time on, for memory and I/O.
pub const STALL_NOTABLE_SHARE: f64 = 0.01;

/// CPU stall is notable from this share: some CPU contention is ordinary
/// on a busy node, so it takes more to matter.
pub const CPU_STALL_NOTABLE_SHARE: f64 = 0.10;

/// ... and a stall is never notable below this many microseconds, however
/// short the run: a 5 ms run with 60 µs of stall says nothing about the node.
pub const STALL_NOTABLE_MIN_US: u64 = 100_000;

/// The CPU frequency at the end of the run is notable below this share of
/// the maximum, and only when the CPU also throttled during the run: idle
/// cores clocked down by their governor make a low mean on their own, so a
/// low frequency alone says nothing.
pub const FREQ_NOTABLE_SHARE: f64 = 0.5;

/// Stall time of one resource during the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    /// `cpu`, `memory` or `io`.
    pub resource: String,
    /// Microseconds during which some task stalled on it.
    pub some_us: u64,
    /// Microseconds during which every non-idle task stalled at once, when
    /// the kernel reports it for this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_us: Option<u64>,
}

/// What the node went through during one run. Every field is the change
/// between the reading at the start and the one at the end, except
/// `cpu_freq`, read at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeConditions {
    /// Nanoseconds between the two readings (the run's time, as the
    /// shares are computed against it).
    pub window_ns: u64,
    /// PSI stall time per resource (`/proc/pressure`).
    pub stalls: Reading<Vec<Stall>>,
    /// Thermal-throttle events, over every CPU.
    pub throttle_events: Reading<u64>,
    /// I/O errors per device or file system; only those that counted any.
    pub io_errors: Reading<Vec<IoErrors>>,
    /// OOM kills on the whole node (`/proc/vmstat`), the run's own
    /// included.
    pub oom_kills: Reading<u64>,
    /// CPU frequency at the end, against the maximum.
    pub cpu_freq: Reading<CpuFreq>,
}

/// One thing the node went through, in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// `memory_pressure`, `io_pressure`, `cpu_pressure`, `throttling`,
    /// `io_errors`, `oom_kills`, `cpu_freq`.
    pub kind: String,
    /// Whether it passes its threshold (see the constants of this module).
    pub notable: bool,
    /// The whole fact, one line: `memory pressure: 12.3 s stalled (4.0%
    /// of the run)`.
    pub text: String,
    /// The figure alone, for a comparison: `12.3 s stalled`.
    pub figure: String,
}

/// `later - earlier` of a counter, or why there is no difference.
fn delta(what: &str, earlier: u64, later: u64) -> Result<u64, String> {
    later.checked_sub(earlier).ok_or_else(|| {
        format!("{what} went backwards during the run ({earlier} to {later}): reset or wrapped")
    })
}

/// The two ends of one source, or the reason one of them is missing.
fn both<'h, T>(start: &'h Reading<T>, end: &'h Reading<T>) -> Result<(&'h T, &'h T), String> {
    match (start, end) {
        (Reading::Ok { value: a }, Reading::Ok { value: b }) => Ok((a, b)),
        (Reading::Unavailable { reason }, _) => Err(reason.clone()),
        (_, Reading::Unavailable { reason }) => Err(format!("at the end of the run: {reason}")),
    }
}

fn reading<T>(r: Result<T, String>) -> Reading<T> {
    match r {
        Ok(value) => Reading::Ok { value },
        Err(reason) => Reading::Unavailable { reason },
    }
}

impl NodeConditions {
    /// The change between a reading before the run and one after it.
    pub fn between(start: &NodeHealth, end: &NodeHealth) -> NodeConditions {
        let window_ns = (end.read_at.as_nanos() - start.read_at.as_nanos()).max(0) as u64;
        let stalls = both(&start.psi, &end.psi).and_then(|(a, b)| {
            let mut out = Vec::new();
            for (name, x, y) in [
                ("cpu", &a.cpu, &b.cpu),
                ("memory", &a.memory, &b.memory),
                ("io", &a.io, &b.io),
            ] {
                let (Some(x), Some(y)) = (x, y) else {
                    continue;
                };
                let some = delta(
                    &format!("{name} PSI some total"),
                    x.some.total_us,
                    y.some.total_us,
                )?;
                let full = match (&x.full, &y.full) {
                    (Some(fx), Some(fy)) => Some(delta(
                        &format!("{name} PSI full total"),
                        fx.total_us,
                        fy.total_us,
                    )?),
                    _ => None,
                };
                out.push(Stall {
                    resource: name.into(),
                    some_us: some,
                    full_us: full,
                });
            }
            Ok(out)
        });
        let throttle_events = both(&start.throttling, &end.throttling)
            .and_then(|(a, b)| delta("the throttle count", a.total(), b.total()));
        let io_errors = both(&start.io_errors, &end.io_errors).and_then(|(a, b)| {
            let mut out = Vec::new();
            for e in b {
                // A device that appeared during the run has no count to
                // start from: it is left out rather than counted from 0.
                let Some(s) = a.iter().find(|s| s.kind == e.kind && s.device == e.device) else {
                    continue;
                };
                let n = delta(
                    &format!("the {} error count of {}", e.kind, e.device),
                    s.count,
                    e.count,
                )?;
                if n > 0 {
                    out.push(IoErrors {
                        kind: e.kind.clone(),
                        device: e.device.clone(),
                        count: n,
                    });
                }
            }
            Ok(out)
        });
        let oom_kills = both(&start.oom_kills, &end.oom_kills)
            .and_then(|(a, b)| delta("/proc/vmstat oom_kill", *a, *b));
        NodeConditions {
            window_ns,
            stalls: reading(stalls),
            throttle_events: reading(throttle_events),
            io_errors: reading(io_errors),
            oom_kills: reading(oom_kills),
            cpu_freq: end.cpu_freq.clone(),
        }
    }

    /// Every fact that could be read, notable or not, in a fixed order:
    /// memory, I/O and CPU pressure, throttling, I/O errors, OOM kills,
    /// frequency. `own_oom_kills` is how many OOM kills were the run's own
    /// (`Run.oom`), told apart from the node's others.
    pub fn facts(&self, own_oom_kills: u64) -> Vec<Fact> {
        let mut out = Vec::new();
        let window_us = self.window_ns / 1000;
        if let Some(stalls) = self.stalls.ok() {
            for name in ["memory", "io", "cpu"] {
                let Some(s) = stalls.iter().find(|s| s.resource == name) else {
                    continue;
                };
                let share = if window_us == 0 {
                    0.0
                } else {
                    s.some_us as f64 / window_us as f64
                };
                let floor = if name == "cpu" {
                    CPU_STALL_NOTABLE_SHARE
                } else {
                    STALL_NOTABLE_SHARE
                };
                let label = match name {
                    "io" => "I/O",
                    "cpu" => "CPU",
                    other => other,
                };
                let figure = format!("{} stalled", seconds(s.some_us));
                let full = match s.full_us {
                    Some(f) if f > 0 => format!(", {} with every task stalled", seconds(f)),
                    _ => String::new(),
                };
                out.push(Fact {
                    kind: format!("{name}_pressure"),
                    notable: s.some_us >= STALL_NOTABLE_MIN_US && share >= floor,
                    text: format!(
                        "{label} pressure: {figure} ({:.1}% of the run){full}",
                        share * 100.0
                    ),
                    figure,
                });
            }
        }
        let throttled = self.throttle_events.ok().is_some_and(|n| *n > 0);
        if let Some(&n) = self.throttle_events.ok() {
            let figure = format!("{n} time{}", if n == 1 { "" } else { "s" });
            out.push(Fact {
                kind: "throttling".into(),
                notable: n > 0,
                text: format!("CPU throttled {figure}"),
                figure,
            });
        }
        if let Some(errs) = self.io_errors.ok() {
            let total: u64 = errs.iter().map(|e| e.count).sum();
            let on: Vec<String> = errs
                .iter()
                .map(|e| {
                    if e.kind == "block" {
                        format!("{} on {}", e.count, e.device)
                    } else {
                        format!("{} on {} ({})", e.count, e.device, e.kind)
                    }
                })
                .collect();
            let figure = if on.is_empty() {
                "0".to_string()
            } else {
                on.join(", ")
            };
            out.push(Fact {
                kind: "io_errors".into(),
                notable: total > 0,
                text: if errs.len() == 1 {
                    let e = &errs[0];
                    format!(
                        "{} I/O error{} on {}{}",
                        e.count,
                        if e.count == 1 { "" } else { "s" },
                        e.device,
                        if e.kind == "block" {
                            String::new()
                        } else {
                            format!(" ({})", e.kind)
                        }
                    )
                } else {
                    format!("{total} I/O errors: {figure}")
                },
                figure,
            });
        }
        if let Some(&n) = self.oom_kills.ok() {
            let others = n.saturating_sub(own_oom_kills);
            let figure = others.to_string();
            out.push(Fact {
                kind: "oom_kills".into(),
                notable: others > 0,
                text: format!(
                    "{others} OOM kill{} on the node (not this run)",
                    if others == 1 { "" } else { "s" }
                ),
                figure,
            });
        }
        if let Some(f) = self.cpu_freq.ok()
            && f.max_mhz > 0.0
        {
            let share = f.cur_mhz_mean / f.max_mhz;
            let figure = format!("{:.0}% of its maximum", share * 100.0);
            out.push(Fact {
                kind: "cpu_freq".into(),
                notable: throttled && share < FREQ_NOTABLE_SHARE,
                text: format!(
                    "CPU at {figure} frequency at the end ({:.0} of {:.0} MHz)",
                    f.cur_mhz_mean, f.max_mhz
                ),
                figure,
            });
        }
        out
    }

    /// The notable facts only (see [`facts`](Self::facts)).
    pub fn notable(&self, own_oom_kills: u64) -> Vec<Fact> {
        self.facts(own_oom_kills)
            .into_iter()
            .filter(|f| f.notable)
            .collect()
    }

    /// The sources that could not be read, with the reason.
    pub fn unavailable(&self) -> Vec<(&'static str, &str)> {
        [
            ("pressure", self.stalls.reason()),
            ("throttling", self.throttle_events.reason()),
            ("I/O errors", self.io_errors.reason()),
            ("OOM kills", self.oom_kills.reason()),
            ("CPU frequency", self.cpu_freq.reason()),
        ]
        .into_iter()
        .filter_map(|(k, r)| r.map(|r| (k, r)))
        .collect()
    }
}

/// The notable node conditions of a run, one line each, for `plumb show`
/// and the run page; empty when nothing was notable or nothing was read.
pub fn notable_lines(run: &crate::Run) -> Vec<String> {
    let own = run.oom.as_ref().map_or(0, |o| o.kills);
    run.node
        .as_ref()
        .map(|c| c.notable(own).into_iter().map(|f| f.text).collect())
        .unwrap_or_default()
}

/// Microseconds as seconds for people: `12.3 s`, `0.04 s`.
fn seconds(us: u64) -> String {
    let s = us as f64 / 1e6;
    if s >= 1.0 || us == 0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

/// How the node condition `kind` reads in a comparison of two runs on
/// host `host`, when it was notable during one run (`during`, `A` or `B`)
/// and not the other: `node-7 was under memory pressure during B (12.3 s
/// stalled), not during A`.
pub fn contrast(kind: &str, host: &str, during: &str, figure: &str) -> String {
    let other = if during == "A" { "B" } else { "A" };
    match kind {
        "memory_pressure" => {
            format!(
                "{host} was under memory pressure during {during} ({figure}), not during {other}"
            )
        }
        "io_pressure" => {
            format!("{host} was under I/O pressure during {during} ({figure}), not during {other}")
        }
        "cpu_pressure" => {
            format!("{host} was under CPU pressure during {during} ({figure}), not during {other}")
        }
        "throttling" => {
            format!("CPU throttled during {during} ({figure} on {host}), not during {other}")
        }
        "io_errors" => {
            format!("{host} had I/O errors during {during} ({figure}), not during {other}")
        }
        "oom_kills" => format!(
            "{host}'s OOM killer killed other processes during {during} ({figure}), not during {other}"
        ),
        "cpu_freq" => {
            format!("{host}'s CPU ran at {figure} frequency at the end of {during}, not of {other}")
        }
        other_kind => {
            format!("{host}: {other_kind} during {during} ({figure}), not during {other}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;
    use crate::health::{HEALTH_VERSION, Psi, PsiLine, PsiResource, Throttling};

    fn line(total_us: u64) -> PsiLine {
        PsiLine {
            total_us,
            ..Default::default()
        }
    }

    fn health(
        at_s: i64,
        mem_us: u64,
        io_us: u64,
        throttle: u64,
        io_err: u64,
        oom: u64,
    ) -> NodeHealth {
        NodeHealth {
            version: HEALTH_VERSION,
            read_at: Timestamp::from_nanos(at_s * 1_000_000_000),
            psi: Reading::Ok {
                value: Psi {
                    cpu: Some(PsiResource {
                        some: line(0),
                        full: None,
                    }),
                    memory: Some(PsiResource {
                        some: line(mem_us),
                        full: Some(line(mem_us / 2)),
                    }),
                    io: Some(PsiResource {
                        some: line(io_us),
                        full: Some(line(0)),
                    }),
                },
            },
            oom_kills: Reading::Ok { value: oom },
            memory_errors: Reading::unavailable("not read for runs"),
            temperatures: Reading::unavailable("not read for runs"),
            throttling: Reading::Ok {
                value: Throttling {
                    cpus: 2,
                    core_events: throttle,
                    package_events: 0,
                },
            },
            cpu_freq: Reading::Ok {
                value: CpuFreq {
                    cpus: 2,
                    cur_mhz_mean: 2000.0,
                    cur_mhz_min: 1900.0,
                    max_mhz: 3000.0,
                },
            },
            network: Reading::unavailable("not read for runs"),
            io_errors: Reading::Ok {
                value: vec![IoErrors {
                    kind: "block".into(),
                    device: "vda".into(),
                    count: io_err,
                }],
            },
            smart: Reading::unavailable("not read for runs"),
        }
    }

    #[test]
    fn counters_become_differences_and_notable_facts() {
        // 300 s of run: 12.3 s of memory stall (4.1%), 1 s of I/O stall
        // (0.3%: below 1%), 37 throttle events, 3 I/O errors, 2 OOM kills.
        let a = health(0, 1_000, 5_000, 10, 1, 4);
        let b = health(300, 12_301_000, 1_005_000, 47, 4, 6);
        let c = NodeConditions::between(&a, &b);
        assert_eq!(c.window_ns, 300_000_000_000);
        let stalls = c.stalls.ok().unwrap();
        assert_eq!(stalls[1].resource, "memory");
        assert_eq!(stalls[1].some_us, 12_300_000);
        assert_eq!(stalls[1].full_us, Some(6_150_000));
        let texts: Vec<String> = c.notable(0).into_iter().map(|f| f.text).collect();
        assert_eq!(
            texts,
            [
                "memory pressure: 12.3 s stalled (4.1% of the run), 6.2 s with every task stalled",
                "CPU throttled 37 times",
                "3 I/O errors on vda",
                "2 OOM kills on the node (not this run)",
            ],
        );
        let all = c.facts(0);
        let io = all.iter().find(|f| f.kind == "io_pressure").unwrap();
        assert!(!io.notable, "0.3% of the run is under the 1% share");
        // The run's own OOM kill is not counted among the node's others.
        let own: Vec<String> = c.notable(2).into_iter().map(|f| f.kind).collect();
        assert!(!own.contains(&"oom_kills".to_string()), "{own:?}");
    }

    #[test]
    fn a_short_run_needs_the_absolute_floor_too() {
        // 50 ms of run with 40 ms of memory stall: 80%, but under 100 ms.
        let mut a = health(0, 0, 0, 0, 0, 0);
        let mut b = health(0, 40_000, 0, 0, 0, 0);
        a.read_at = Timestamp::from_nanos(0);
        b.read_at = Timestamp::from_nanos(50_000_000);
        let c = NodeConditions::between(&a, &b);
        assert!(c.notable(0).is_empty(), "{:?}", c.notable(0));
        // At the floor and above the share it is notable.
        let b = health(10, STALL_NOTABLE_MIN_US, 0, 0, 0, 0);
        let c = NodeConditions::between(&health(0, 0, 0, 0, 0, 0), &b);
        assert_eq!(c.notable(0)[0].kind, "memory_pressure");
        // CPU stall needs its own, higher share.
        let mut a = health(0, 0, 0, 0, 0, 0);
        let mut b = health(100, 0, 0, 0, 0, 0);
        let cpu = |h: &mut NodeHealth, us| {
            if let Reading::Ok { value } = &mut h.psi {
                value.cpu.as_mut().unwrap().some.total_us = us;
            }
        };
        cpu(&mut a, 0);
        cpu(&mut b, 9_000_000);
        assert!(NodeConditions::between(&a, &b).notable(0).is_empty());
        cpu(&mut b, 10_000_000);
        assert_eq!(
            NodeConditions::between(&a, &b).notable(0)[0].text,
            "CPU pressure: 10.0 s stalled (10.0% of the run)"
        );
    }

    #[test]
    fn a_counter_that_went_backwards_is_unavailable_not_negative() {
        let a = health(0, 5_000_000, 0, 50, 9, 3);
        let b = health(10, 1_000, 0, 2, 1, 0);
        let c = NodeConditions::between(&a, &b);
        for (what, reason) in [
            ("pressure", c.stalls.reason()),
            ("throttling", c.throttle_events.reason()),
            ("io", c.io_errors.reason()),
            ("oom", c.oom_kills.reason()),
        ] {
            let r = reason.unwrap_or_else(|| panic!("{what} should be unavailable"));
            assert!(r.contains("went backwards"), "{what}: {r}");
        }
        assert!(c.notable(0).is_empty());
        assert_eq!(c.unavailable().len(), 4);
        // Wrapped at u64::MAX reads as backwards too.
        let a = health(0, u64::MAX, 0, 0, 0, 0);
        let b = health(1, 3, 0, 0, 0, 0);
        assert!(NodeConditions::between(&a, &b).stalls.reason().is_some());
    }

    #[test]
    fn unreadable_at_either_end_says_why_and_never_zero() {
        let mut a = health(0, 0, 0, 0, 0, 0);
        a.throttling = Reading::unavailable("no thermal_throttle counts");
        let mut b = health(10, 0, 0, 0, 0, 0);
        b.oom_kills = Reading::unavailable("/proc/vmstat is absent");
        let c = NodeConditions::between(&a, &b);
        assert_eq!(
            c.throttle_events.reason(),
            Some("no thermal_throttle counts")
        );
        assert_eq!(
            c.oom_kills.reason(),
            Some("at the end of the run: /proc/vmstat is absent")
        );
        let kinds: Vec<String> = c.facts(0).into_iter().map(|f| f.kind).collect();
        assert!(!kinds.contains(&"throttling".to_string()), "{kinds:?}");
        assert!(!kinds.contains(&"oom_kills".to_string()), "{kinds:?}");
    }

    #[test]
    fn a_device_that_appeared_during_the_run_is_left_out() {
        let a = health(0, 0, 0, 0, 0, 0);
        let mut b = health(10, 0, 0, 0, 0, 0);
        if let Reading::Ok { value } = &mut b.io_errors {
            value.push(IoErrors {
                kind: "block".into(),
                device: "sdb".into(),
                count: 7,
            });
        }
        let c = NodeConditions::between(&a, &b);
        assert_eq!(c.io_errors.ok().unwrap().len(), 0);
    }

    #[test]
    fn a_low_frequency_at_the_end_is_notable_only_with_throttling() {
        let a = health(0, 0, 0, 0, 0, 0);
        let mut b = health(10, 0, 0, 0, 0, 0);
        assert!(NodeConditions::between(&a, &b).notable(0).is_empty());
        if let Reading::Ok { value } = &mut b.cpu_freq {
            value.cur_mhz_mean = 1200.0;
        }
        // Idle cores clocked down: not notable by itself.
        assert!(NodeConditions::between(&a, &b).notable(0).is_empty());
        if let Reading::Ok { value } = &mut b.throttling {
            value.core_events = 3;
        }
        let texts: Vec<String> = NodeConditions::between(&a, &b)
            .notable(0)
            .into_iter()
            .map(|f| f.text)
            .collect();
        assert_eq!(
            texts,
            [
                "CPU throttled 3 times",
                "CPU at 40% of its maximum frequency at the end (1200 of 3000 MHz)"
            ]
        );
    }

    #[test]
    fn contrasts_name_the_node_and_the_run() {
        assert_eq!(
            contrast("memory_pressure", "node-7", "B", "12.3 s stalled"),
            "node-7 was under memory pressure during B (12.3 s stalled), not during A"
        );
        assert_eq!(
            contrast("throttling", "node-7", "A", "37 times"),
            "CPU throttled during A (37 times on node-7), not during B"
        );
    }
}
