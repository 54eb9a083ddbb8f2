//! When periodic jobs start (`plumb every`), pure: intervals, 5-field cron
//! expressions evaluated in UTC, the next start after a moment, and the
//! stable splay that spreads a fleet's starts over a window the same way
//! on every run.
//!
//! An interval's ticks are the multiples of the interval since the Unix
//! epoch, so `every 10m` ticks at :00, :10, :20 on every host, as a
//! calendar timer does; a splay then moves each host's start within its
//! window. Cron expressions are read in UTC, like every time plumb shows.

use crate::Timestamp;
use std::fmt;

const NS_PER_SEC: i64 = 1_000_000_000;
const NS_PER_MIN: i64 = 60 * NS_PER_SEC;

/// The shortest interval `plumb every` accepts.
pub const MIN_INTERVAL_NS: i64 = NS_PER_SEC;

/// Parses an interval (`30s`, `10m`, `1h30m`: plumb's one duration syntax,
/// [`crate::parse_duration_ns`]). Zero and intervals under a second are
/// refused: a job started more often than once a second is not a periodic
/// job but a loop.
pub fn parse_interval(s: &str) -> Result<i64, String> {
    let ns = crate::parse_duration_ns(s).map_err(|e| format!("interval {e}"))?;
    if ns == 0 {
        return Err(format!(
            "interval `{s}` is zero: the interval must be at least 1s"
        ));
    }
    if ns < MIN_INTERVAL_NS {
        return Err(format!(
            "interval `{s}` is shorter than 1s: the interval must be at least 1s"
        ));
    }
    Ok(ns)
}

/// When a job starts: every interval, or at the moments a cron expression
/// names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every this many nanoseconds, aligned to the epoch.
    Every(i64),
    /// At the minutes a cron expression matches, in UTC.
    Cron(Cron),
}

impl Schedule {
    /// The first tick strictly after `t`, or `None` when there is none
    /// (a cron expression that never matches, or past the year 2262).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(step) => {
                let k = t.as_nanos().div_euclid(*step).checked_add(1)?;
                k.checked_mul(*step).map(Timestamp::from_nanos)
            }
            Schedule::Cron(c) => c.next_after(t),
        }
    }
}

/// The fields of a cron expression, in order, with their ranges.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A 5-field cron expression (`minute hour day-of-month month
/// day-of-week`), evaluated in UTC. Each field is `*`, a number, a range
/// `a-b`, a step `*/n`, `a-b/n` or `a/n` (from a to the field's end), or a
/// comma-separated list of those. Months may be written `jan`..`dec` and
/// days `sun`..`sat` (either case); day-of-week 0 and 7 are both Sunday.
/// As in Vixie cron, when both day-of-month and day-of-week are restricted
/// a day matching either one matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_any: bool,
    weekdays_any: bool,
    text: String,
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Cron {
    type Err = String;
    fn from_str(s: &str) -> Result<Cron, String> {
        Cron::parse(s)
    }
}

impl Cron {
    /// Parses a 5-field expression; an error names the field that is wrong
    /// and why.
    pub fn parse(s: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "cron expression `{s}` has {} field{}: it needs 5 (minute hour day-of-month month day-of-week), like `*/5 * * * *`",
                parts.len(),
                if parts.len() == 1 { "" } else { "s" }
            ));
        }
        let mut sets = [0u64; 5];
        for (i, (part, &(name, lo, hi))) in parts.iter().zip(FIELDS.iter()).enumerate() {
            let names: &[&str] = match i {
                3 => &MONTHS,
                4 => &DAYS,
                _ => &[],
            };
            sets[i] = parse_field(part, lo, hi, names)
                .map_err(|why| format!("cron expression `{s}`: {name} field `{part}`: {why}"))?;
        }
        // Sunday is both 0 and 7.
        let mut weekdays = sets[4];
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes: sets[0],
            hours: sets[1] as u32,
            days: sets[2] as u32,
            months: sets[3] as u16,
            weekdays: (weekdays & 0x7f) as u8,
            days_any: parts[2] == "*",
            weekdays_any: parts[4] == "*",
            text: parts.join(" "),
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let d = self.days & (1 << day) != 0;
        let w = self.weekdays & (1 << weekday) != 0;
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (true, false) => w,
            (false, true) => d,
            (false, false) => d || w,
        }
    }

    /// The first matching minute strictly after `t` (UTC), or `None` when
    /// the expression matches no day in 400 years (`0 0 30 2 *`), the
    /// Gregorian calendar's whole cycle.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let start = t.as_nanos().div_euclid(NS_PER_MIN) + 1;
        let last_day = start.div_euclid(1440) + 400 * 366;
        let mut m = start;
        loop {
            let days = m.div_euclid(1440);
            if days > last_day {
                return None;
            }
            let (y, mo, d) = civil_from_days(days);
            if self.months & (1 << mo) == 0 {
                let (ny, nm) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
                m = days_from_civil(ny, nm, 1) * 1440;
                continue;
            }
            let weekday = (days + 4).rem_euclid(7) as u32;
            if !self.day_matches(d, weekday) {
                m = (days + 1) * 1440;
                continue;
            }
            let in_day = m.rem_euclid(1440);
            let h = (in_day / 60) as u32;
            if self.hours & (1 << h) == 0 {
                m = days * 1440 + (h as i64 + 1) * 60;
                continue;
            }
            let mi = (in_day % 60) as u32;
            // The first allowed minute at or after `mi` in this hour.
            let later = self.minutes >> mi;
            if later == 0 {
                m = days * 1440 + (h as i64 + 1) * 60;
                continue;
            }
            m += later.trailing_zeros() as i64;
            return m.checked_mul(NS_PER_MIN).map(Timestamp::from_nanos);
        }
    }
}

/// One field: a comma-separated list of `*`, `n`, `a-b`, each optionally
/// `/step`. Returns the set of allowed values as bits.
fn parse_field(field: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    if field.is_empty() {
        return Err("empty".into());
    }
    let mut set = 0u64;
    for item in field.split(',') {
        if item.is_empty() {
            return Err("an empty item in the list".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("step `{s}` is not a whole number"))?;
                if step == 0 {
                    return Err("a step of 0 matches nothing".into());
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, lo, hi, names)?;
            let b = value(b, lo, hi, names)?;
            if a > b {
                return Err(format!("range `{range}` runs backwards ({a} is after {b})"));
            }
            (a, b)
        } else {
            let a = value(range, lo, hi, names)?;
            // `a/n` runs from a to the field's end.
            (a, if step.is_some() { hi } else { a })
        };
        let step = step.unwrap_or(1);
        let mut v = a;
        while v <= b {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

fn value(s: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        // Months count from 1, days from 0 (Sunday).
        return Ok(i as u32 + lo);
    }
    let v: u32 = s.parse().map_err(|_| {
        if names.is_empty() {
            format!("`{s}` is not a number")
        } else {
            format!(
                "`{s}` is not a number or a name ({}..{})",
                names[0],
                names[names.len() - 1]
            )
        }
    })?;
    if v < lo || v > hi {
        return Err(format!("{v} is out of range {lo}-{hi}"));
    }
    Ok(v)
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic
/// Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A 64-bit hash that never changes between versions of plumb or Rust:
/// FNV-1a over the bytes, then the splitmix64 finaliser to spread FNV's
/// weak low-order mixing over every bit.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // A separator, so ("ab", "c") and ("a", "bc") differ.
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    splitmix64(h)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fixed delay, in `[0, window_ns)`, of job `job` on host `host_id`:
/// the same for the same host and job on every run and every plumb
/// version, and spread evenly over the window across hosts (as systemd's
/// `FixedRandomDelay`). A window of zero or less gives zero.
pub fn stable_splay(host_id: &str, job: &str, window_ns: i64) -> i64 {
    if window_ns <= 0 {
        return 0;
    }
    let h = stable_hash(&[host_id.as_bytes(), job.as_bytes()]);
    ((h as u128 * window_ns as u128) >> 64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn next(expr: &str, from: &str) -> String {
        Cron::parse(expr)
            .unwrap()
            .next_after(at(from))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn civil_round_trips() {
        for days in [-800_000i64, -1, 0, 1, 59, 60, 365, 11_016, 20_000, 106_751] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    }

    #[test]
    fn cron_next_fire() {
        let cases = [
            (
                "*/5 * * * *",
                "2026-12-04T02:03:10Z",
                "2026-12-04T02:05:00Z",
            ),
            (
                "*/5 * * * *",
                "2026-12-04T02:05:00Z",
                "2026-12-04T02:10:00Z",
            ),
            (
                "* * * * *",
                "2026-12-04T02:05:59.9Z",
                "2026-12-04T02:06:00Z",
            ),
            ("0 * * * *", "2026-12-04T23:30:00Z", "2026-12-05T00:00:00Z"),
            (
                "30 9 * * mon-fri",
                "2026-12-04T10:00:00Z",
                "2026-12-07T09:30:00Z",
            ),
            (
                "0 0 1 jan *",
                "2026-06-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            ("0 0 29 2 *", "2025-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),
            (
                "15,45 */6 * * *",
                "2026-12-04T06:16:00Z",
                "2026-12-04T06:45:00Z",
            ),
            (
                "15,45 */6 * * *",
                "2026-12-04T06:46:00Z",
                "2026-12-04T12:15:00Z",
            ),
            ("0 12 * * 7", "2026-12-04T00:00:00Z", "2026-12-06T12:00:00Z"),
            ("0 12 * * 0", "2026-12-04T00:00:00Z", "2026-12-06T12:00:00Z"),
            // Both day fields restricted: either matches (the 13th, or a Friday).
            (
                "0 0 13 * fri",
                "2026-12-05T00:00:00Z",
                "2026-12-11T00:00:00Z",
            ),
            (
                "0 0 13 * fri",
                "2026-12-11T00:00:00Z",
                "2026-12-13T00:00:00Z",
            ),
            (
                "10-20/5 1 * * *",
                "2026-12-04T01:16:00Z",
                "2026-12-04T01:20:00Z",
            ),
            (
                "50/5 1 * * *",
                "2026-12-04T01:56:00Z",
                "2026-12-05T01:50:00Z",
            ),
            ("0 0 31 * *", "2026-11-01T00:00:00Z", "2026-12-31T00:00:00Z"),
            (
                "0 0 * DEC Sun",
                "2026-01-01T00:00:00Z",
                "2026-12-06T00:00:00Z",
            ),
        ];
        for (expr, from, want) in cases {
            assert_eq!(next(expr, from), want, "{expr} after {from}");
        }
    }

    #[test]
    fn cron_that_never_fires_gives_none() {
        let c = Cron::parse("0 0 30 2 *").unwrap();
        assert_eq!(c.next_after(at("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn bad_cron_names_the_field() {
        let cases = [
            ("61 * * * *", "minute field `61`: 61 is out of range 0-59"),
            ("* 24 * * *", "hour field `24`: 24 is out of range 0-23"),
            (
                "* * 0 * *",
                "day-of-month field `0`: 0 is out of range 1-31",
            ),
            ("* * * 13 *", "month field `13`: 13 is out of range 1-12"),
            (
                "* * * foo *",
                "month field `foo`: `foo` is not a number or a name (jan..dec)",
            ),
            ("* * * * 8", "day-of-week field `8`: 8 is out of range 0-7"),
            (
                "*/0 * * * *",
                "minute field `*/0`: a step of 0 matches nothing",
            ),
            (
                "5-1 * * * *",
                "minute field `5-1`: range `5-1` runs backwards",
            ),
            ("1,,2 * * * *", "minute field `1,,2`: an empty item"),
            (
                "*/x * * * *",
                "minute field `*/x`: step `x` is not a whole number",
            ),
            ("* * * *", "has 4 fields: it needs 5"),
            ("", "has 0 fields"),
            ("* * * * * *", "has 6 fields"),
        ];
        for (expr, want) in cases {
            let err = Cron::parse(expr).unwrap_err();
            assert!(err.contains(want), "{expr}: {err}");
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("30s"), Ok(30 * NS_PER_SEC));
        assert_eq!(parse_interval("1h30m"), Ok(90 * NS_PER_MIN));
        assert!(parse_interval("0s").unwrap_err().contains("is zero"));
        assert!(parse_interval("0").unwrap_err().contains("is zero"));
        assert!(
            parse_interval("500ms")
                .unwrap_err()
                .contains("shorter than 1s")
        );
        assert!(
            parse_interval("5x")
                .unwrap_err()
                .contains("unknown duration unit `x`")
        );
        assert!(parse_interval("10").unwrap_err().contains("no unit"));
        let s = Schedule::Every(10 * NS_PER_MIN);
        assert_eq!(
            s.next_after(at("2026-12-04T02:03:10Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-12-04T02:10:00Z"
        );
        assert_eq!(
            s.next_after(at("2026-12-04T02:10:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-12-04T02:20:00Z"
        );
    }

    #[test]
    fn stable_hash_is_fixed() {
        // These values must never change: a fleet's offsets depend on them.
        assert_eq!(stable_hash(&[b""]), splitmix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(stable_hash(&[b"a"]), splitmix64(0xaf63_dc4c_8601_ec8c));
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        let w = 600 * NS_PER_SEC;
        // Computed once by an independent implementation; pinned.
        assert_eq!(stable_splay("host-007", "backup", w), 257_962_366_290);
        assert_eq!(
            stable_splay("host-007", "backup", w),
            stable_splay("host-007", "backup", w)
        );
        assert_ne!(
            stable_splay("host-007", "backup", w),
            stable_splay("host-008", "backup", w)
        );
        assert_eq!(stable_splay("h", "j", 0), 0);
        for i in 0..1000 {
            let s = stable_splay(&format!("h{i}"), "j", 7);
            assert!((0..7).contains(&s));
        }
    }

    /// Whether `minute` (since the epoch) matches `c`, by the definition,
    /// minute by minute: the check `next_after` is held to.
    fn matches(c: &Cron, minute: i64) -> bool {
        let days = minute.div_euclid(1440);
        let (_, mo, d) = civil_from_days(days);
        let in_day = minute.rem_euclid(1440);
        c.minutes & (1 << (in_day % 60)) != 0
            && c.hours & (1 << (in_day / 60)) != 0
            && c.months & (1 << mo) != 0
            && c.day_matches(d, (days + 4).rem_euclid(7) as u32)
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn minute() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("*".to_string()),
                (0u32..60).prop_map(|n| n.to_string()),
                (1u32..30).prop_map(|n| format!("*/{n}")),
                (0u32..30, 30u32..60, 1u32..10).prop_map(|(a, b, s)| format!("{a}-{b}/{s}")),
                (0u32..60, 0u32..60).prop_map(|(a, b)| format!("{a},{b}")),
            ]
        }

        fn hour() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("*".to_string()),
                (0u32..24).prop_map(|n| n.to_string()),
                (1u32..12).prop_map(|n| format!("*/{n}")),
            ]
        }

        fn day_of_month() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("*".to_string()),
                (1u32..29).prop_map(|n| n.to_string()),
            ]
        }

        fn day_of_week() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("*".to_string()),
                (0u32..8).prop_map(|n| n.to_string()),
                Just("mon-fri".to_string()),
            ]
        }

        proptest! {
            /// Expressions that fire at least once a month, at random
            /// moments: the next fire matches, and no minute before it
            /// does.
            #[test]
            fn next_after_is_the_first_matching_minute(
                minute in minute(),
                hour in hour(),
                dom in day_of_month(),
                dow in day_of_week(),
                at_s in 0i64..4_000_000_000,
            ) {
                let expr = format!("{minute} {hour} {dom} * {dow}");
                let c = Cron::parse(&expr).unwrap();
                let t = Timestamp::from_nanos(at_s * NS_PER_SEC);
                let next = c.next_after(t).unwrap();
                let next_min = next.as_nanos() / NS_PER_MIN;
                prop_assert_eq!(next.as_nanos() % NS_PER_MIN, 0);
                prop_assert!(matches(&c, next_min), "{} -> {}", expr, next);
                let first = at_s * NS_PER_SEC / NS_PER_MIN + 1;
                prop_assert!(next_min >= first);
                for m in first..next_min {
                    prop_assert!(!matches(&c, m), "{} matches minute {} before {}", expr, m, next);
                }
            }
        }
    }

    /// The test: 100 hosts with --stable-splay over a 10-minute
    /// window; no minute gets more than twice the mean number of starts.
    #[test]
    fn hundred_hosts_spread_over_ten_minutes() {
        use sha2::Digest;
        let window = 10 * NS_PER_MIN;
        let numbered: Vec<String> = (0..100).map(|i| format!("host-{i:03}")).collect();
        // Machine-id-like: 32 hex digits.
        let machine_ids: Vec<String> = (0..100)
            .map(|i: u32| {
                let d = sha2::Sha256::digest(i.to_le_bytes());
                d[..16].iter().map(|b| format!("{b:02x}")).collect()
            })
            .collect();
        for hosts in [&numbered, &machine_ids] {
            for job in ["backup", "report", "x"] {
                let mut per_minute = [0u32; 10];
                for h in hosts.iter() {
                    let off = stable_splay(h, job, window);
                    assert!((0..window).contains(&off));
                    per_minute[(off / NS_PER_MIN) as usize] += 1;
                }
                let mean = hosts.len() as u32 / 10;
                let max = *per_minute.iter().max().unwrap();
                assert!(
                    max <= 2 * mean,
                    "job {job}: starts per minute {per_minute:?}, mean {mean}"
                );
            }
        }
    }
}
