//! The timestamp a log line starts with, in the formats logs are written
//! in: epoch seconds with a fraction (`1733259306.123456`), RFC 3339 / ISO
//! 8601 with or without a zone (`2026-12-03T20:55:06.123Z`,
//! `2026-12-03 20:55:06,123` as Python's logging writes), syslog's
//! `Dec  3 20:55:06` (no year: the year is given), or a strftime pattern.
//!
//! A file's format is found once, from its first line ([`Format::detect`]),
//! and every line is then read with that one format, by hand for the three
//! built-in ones: this runs once per line of files of millions of lines.
//! Times without a zone are taken as UTC.

use std::fmt;

/// How a file's lines start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Seconds since the epoch, with an optional fraction.
    Epoch,
    /// `YYYY-MM-DD[T ]HH:MM:SS[.,]frac` and an optional `Z` or `±HH[:]MM`.
    Iso,
    /// `Mmm dd HH:MM:SS` in the given year, UTC.
    Syslog {
        /// The year the lines are from.
        year: i32,
    },
    /// A strftime-like pattern (jiff's `strtime`), for the leading part of
    /// the line; a pattern with no zone is UTC, one with no year takes
    /// `year`.
    Pattern {
        /// The pattern.
        pattern: String,
        /// The year when the pattern has none.
        year: i32,
    },
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Epoch => f.write_str("epoch seconds"),
            Format::Iso => f.write_str("RFC 3339 / ISO 8601"),
            Format::Syslog { .. } => f.write_str("syslog"),
            Format::Pattern { pattern, .. } => write!(f, "pattern `{pattern}`"),
        }
    }
}

impl Format {
    /// The built-in format `line` starts with, trying epoch, ISO and
    /// syslog in turn; `None` when it starts with none of them.
    pub fn detect(line: &[u8], year: i32) -> Option<Format> {
        [Format::Epoch, Format::Iso, Format::Syslog { year }]
            .into_iter()
            .find(|f| f.parse(line).is_some())
    }

    /// The time `line` starts with, in ns since the epoch (UTC), and how
    /// many bytes it took; `None` when the line does not start with a time
    /// in this format (a continuation line, such as a traceback's).
    pub fn parse(&self, line: &[u8]) -> Option<(i64, usize)> {
        match self {
            Format::Epoch => epoch(line),
            Format::Iso => iso(line),
            Format::Syslog { year } => syslog(line, *year),
            Format::Pattern { pattern, year } => strtime(pattern, line, *year),
        }
    }
}

/// Digits at `b[at..at+n]` as a number.
#[inline]
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    let mut v = 0i64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(v)
}

/// A fraction of a second after its separator: up to nine digits kept, more
/// read and dropped. Returns (ns, bytes).
#[inline]
fn fraction(b: &[u8]) -> (i64, usize) {
    let mut ns = 0i64;
    let mut k = 0;
    while k < b.len() && b[k].is_ascii_digit() {
        if k < 9 {
            ns = ns * 10 + (b[k] - b'0') as i64;
        }
        k += 1;
    }
    for _ in k..9 {
        ns *= 10;
    }
    (ns, k)
}

/// Whether the time ends here: the end of the line or a non-alphanumeric
/// byte, so `12345abc` is not a time.
#[inline]
fn ends(b: &[u8], at: usize) -> bool {
    b.get(at).is_none_or(|c| !c.is_ascii_alphanumeric())
}

fn epoch(b: &[u8]) -> Option<(i64, usize)> {
    let mut i = 0;
    let mut secs = 0i64;
    while i < b.len() && b[i].is_ascii_digit() {
        secs = secs.checked_mul(10)?.checked_add((b[i] - b'0') as i64)?;
        i += 1;
    }
    // Nine to eleven digits: 2001 to 5138. Fewer is a line number or a
    // count, more is milliseconds, which nobody writes with a fraction.
    if !(9..=11).contains(&i) {
        return None;
    }
    let mut ns = 0;
    if b.get(i) == Some(&b'.') {
        let (f, k) = fraction(&b[i + 1..]);
        if k == 0 {
            return None;
        }
        ns = f;
        i += 1 + k;
    }
    if !ends(b, i) {
        return None;
    }
    Some((secs.checked_mul(1_000_000_000)?.checked_add(ns)?, i))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ns since the epoch of a UTC date and time, refusing impossible fields.
fn civil_ns(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60_000_000_000 + s * 1_000_000_000)
}

fn iso(b: &[u8]) -> Option<(i64, usize)> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let mut t = civil_ns(
        digits(b, 0, 4)?,
        digits(b, 5, 2)?,
        digits(b, 8, 2)?,
        digits(b, 11, 2)?,
        digits(b, 14, 2)?,
        digits(b, 17, 2)?,
    )?;
    let mut i = 19;
    if matches!(b.get(i), Some(b'.' | b',')) {
        let (f, k) = fraction(&b[i + 1..]);
        if k == 0 {
            return None;
        }
        t += f;
        i += 1 + k;
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i += 1,
        Some(&sign @ (b'+' | b'-')) => {
            let h = digits(b, i + 1, 2)?;
            let (m, len) = if b.get(i + 3) == Some(&b':') {
                (digits(b, i + 4, 2)?, 6)
            } else {
                (
                    digits(b, i + 3, 2).unwrap_or(0),
                    if digits(b, i + 3, 2).is_some() { 5 } else { 3 },
                )
            };
            let off = (h * 60 + m) * 60_000_000_000;
            t = if sign == b'+' { t - off } else { t + off };
            i += len;
        }
        _ => {}
    }
    ends(b, i).then_some((t, i))
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn syslog(b: &[u8], year: i32) -> Option<(i64, usize)> {
    if b.len() < 15 || b[3] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let mo = MONTHS.iter().position(|m| &b[..3] == *m)? as i64 + 1;
    let d = match b[4] {
        b' ' => digits(b, 5, 1)?,
        _ => digits(b, 4, 2)?,
    };
    if b[6] != b' ' {
        return None;
    }
    let t = civil_ns(
        year as i64,
        mo,
        d,
        digits(b, 7, 2)?,
        digits(b, 10, 2)?,
        digits(b, 13, 2)?,
    )?;
    ends(b, 15).then_some((t, 15))
}

fn strtime(pattern: &str, b: &[u8], year: i32) -> Option<(i64, usize)> {
    let (mut tm, used) = jiff::fmt::strtime::BrokenDownTime::parse_prefix(pattern, b).ok()?;
    if tm.year().is_none() {
        tm.set_year(Some(i16::try_from(year).ok()?)).ok()?;
    }
    let ts = match tm.to_timestamp() {
        Ok(ts) => ts,
        Err(_) => jiff::tz::TimeZone::UTC
            .to_timestamp(tm.to_datetime().ok()?)
            .ok()?,
    };
    Some((i64::try_from(ts.as_nanosecond()).ok()?, used))
}

/// A fast RFC 3339 writer of UTC nanosecond times
/// (`2026-12-03T20:55:06.123456789Z`), for output of millions of lines: the
/// date and time of day are computed once per second.
#[derive(Debug, Default)]
pub struct Rfc3339 {
    second: Option<i64>,
    buf: [u8; 30],
}

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn put(buf: &mut [u8], mut v: i64) {
    for b in buf.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

impl Rfc3339 {
    /// `ns` as RFC 3339 with nine fraction digits and a `Z`.
    pub fn format(&mut self, ns: i64) -> &[u8] {
        let sec = ns.div_euclid(1_000_000_000);
        if self.second != Some(sec) {
            let (y, m, d) = civil_from_days(sec.div_euclid(86_400));
            let s = sec.rem_euclid(86_400);
            let b = &mut self.buf;
            put(&mut b[0..4], y.clamp(0, 9999));
            b[4] = b'-';
            put(&mut b[5..7], m);
            b[7] = b'-';
            put(&mut b[8..10], d);
            b[10] = b'T';
            put(&mut b[11..13], s / 3600);
            b[13] = b':';
            put(&mut b[14..16], s / 60 % 60);
            b[16] = b':';
            put(&mut b[17..19], s % 60);
            b[19] = b'.';
            b[29] = b'Z';
            self.second = Some(sec);
        }
        put(&mut self.buf[20..29], ns.rem_euclid(1_000_000_000));
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03T20:55:06Z.
    const T: i64 = 1_796_331_306_000_000_000;

    #[test]
    fn every_built_in_format_reads_the_same_moment() {
        let cases: [(&str, i64, usize); 10] = [
            ("1796331306.123456 host=a hello", T + 123_456_000, 17),
            ("1796331306 hello", T, 10),
            ("2026-12-03T20:55:06.123Z GET /", T + 123_000_000, 24),
            ("2026-12-03T20:55:06Z", T, 20),
            ("2026-12-03 20:55:06,123 INFO x", T + 123_000_000, 23),
            ("2026-12-03T21:55:06+01:00 x", T, 25),
            ("2026-12-03T15:55:06.5-0500 x", T + 500_000_000, 26),
            ("2026-12-03T20:55:06.123456789123 x", T + 123_456_789, 32),
            ("Dec  3 20:55:06 host sshd[1]: x", T, 15),
            ("Dec 03 20:55:06 host", T, 15),
        ];
        for (line, want, used) in cases {
            let f = Format::detect(line.as_bytes(), 2026).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(
                f.parse(line.as_bytes()),
                Some((want, used)),
                "{line} as {f}"
            );
        }
    }

    #[test]
    fn lines_that_start_with_no_time_are_not_times() {
        for line in [
            "Traceback (most recent call last):",
            "  File \"x.py\", line 3",
            "12345 is a count",
            "17963313060001 ms",
            "1796331306abc",
            "2026-13-03T20:55:06Z",
            "2026-12-03T20:55",
            "Foo  3 20:55:06 x",
            "",
        ] {
            assert_eq!(Format::detect(line.as_bytes(), 2026), None, "{line}");
        }
        assert_eq!(Format::Iso.parse(b"1796331306.5 x"), None);
    }

    #[test]
    fn the_fast_writer_agrees_with_jiff() {
        let mut w = Rfc3339::default();
        for ns in [
            0,
            T + 123_456_789,
            T + 86_400_000_000_000 * 400 + 7,
            951_782_400_000_000_001,
            -1,
        ] {
            let want = format!(
                "{}.{:09}Z",
                jiff::Timestamp::from_nanosecond(ns as i128)
                    .unwrap()
                    .strftime("%Y-%m-%dT%H:%M:%S"),
                ns.rem_euclid(1_000_000_000)
            );
            assert_eq!(std::str::from_utf8(w.format(ns)).unwrap(), want, "{ns}");
        }
    }

    #[test]
    fn a_pattern_reads_what_the_built_ins_do_not() {
        let f = Format::Pattern {
            pattern: "[%d/%b/%Y:%H:%M:%S %z]".into(),
            year: 2000,
        };
        let line = b"[03/Dec/2026:21:55:06 +0100] \"GET / HTTP/1.1\" 200";
        assert_eq!(f.parse(line), Some((T, 28)));
        let f = Format::Pattern {
            pattern: "%m%d %H:%M:%S".into(),
            year: 2026,
        };
        assert_eq!(f.parse(b"1203 20:55:06 glog line"), Some((T, 13)));
        assert_eq!(f.parse(b"not a time"), None);
    }
}
