//! UTC timestamps as integer nanoseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A UTC instant, nanoseconds since the Unix epoch. Serialized as a plain
/// integer; displayed as RFC 3339 with a `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time from the system clock.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_nanos() as i64)
    }

    /// From nanoseconds since the epoch.
    pub const fn from_nanos(ns: i64) -> Timestamp {
        Timestamp(ns)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC with nanosecond precision trimmed of trailing zeros,
    /// e.g. `2026-11-27T14:50:28.123Z`.
    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_nanosecond(self.0 as i128) {
            Ok(ts) => ts.to_string(),
            Err(_) => format!("@{}ns", self.0),
        }
    }

    /// RFC 3339 with seconds precision, for tables.
    pub fn to_rfc3339_secs(self) -> String {
        match jiff::Timestamp::from_second(self.0.div_euclid(1_000_000_000)) {
            Ok(ts) => ts.to_string(),
            Err(_) => format!("@{}ns", self.0),
        }
    }

    /// Parses RFC 3339 (any offset; converted to UTC).
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
        let ts: jiff::Timestamp = s
            .parse()
            .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))?;
        // Nanoseconds in an i64 reach only to 2262; a later time must be
        // refused rather than wrapped around into the past.
        i64::try_from(ts.as_nanosecond())
            .map(Timestamp)
            .map_err(|_| format!("`{s}` is out of range: times from 1678 to 2262 are supported"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The units a duration is written in, with their length in nanoseconds.
const UNITS: [(&str, f64); 10] = [
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("min", 60e9),
    ("m", 60e9),
    ("h", 3600e9),
    ("d", 86400e9),
    ("w", 7.0 * 86400e9),
];

const DURATION_HINT: &str =
    "a duration is numbers with units, like 90s, 15m, 2h, 3d, 1h30m or 250ms";

/// Parses a duration: one or more numbers each followed by a unit (`ns`,
/// `us`, `ms`, `s`, `m` or `min`, `h`, `d`, `w`), such as `90s`, `1.5h` or
/// `1h30m`, into nanoseconds. This is the one duration syntax of plumb:
/// every flag, configuration value and dashboard parameter uses it. A unit
/// is required (only `0` may go without one), because a bare `5` means
/// seconds to one reader and minutes to another. Negative durations are
/// refused.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    if t.starts_with('-') {
        return Err(format!(
            "`{s}` is negative: a duration must be zero or more"
        ));
    }
    if t.is_empty() {
        return Err(format!(
            "an empty string is not a duration: {DURATION_HINT}"
        ));
    }
    let mut rest = t;
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration: {DURATION_HINT}"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("`{s}` has no unit after `{num}`: {DURATION_HINT}"));
        }
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| {
                format!("`{s}`: unknown duration unit `{unit}` (use ns, us, ms, s, m, h, d or w)")
            })?;
        total += value * scale;
        rest = next;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return Err(format!("`{s}` is too long a duration"));
    }
    Ok(total.round() as i64)
}

/// [`parse_duration_ns`] as a [`std::time::Duration`].
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    parse_duration_ns(s).map(|ns| std::time::Duration::from_nanos(ns as u64))
}

/// Parses a moment: an RFC 3339 time with `Z` or an offset
/// (`2026-12-03T06:30:00Z`, `2026-12-03T07:30:00+01:00`), or a duration ago
/// counted back from `now` (`90s`, `2h`, `3d`, `1h30m`). The one syntax of
/// `--since`/`--until` and the dashboard's `since:`.
pub fn parse_moment(s: &str, now: Timestamp) -> Result<Timestamp, String> {
    let t = s.trim();
    // A time starts with a four-digit year and a dash; a duration never has
    // a dash after its first digits, so the two cannot be confused.
    if t.len() > 5 && t.as_bytes()[4] == b'-' && t[..4].bytes().all(|b| b.is_ascii_digit()) {
        return Timestamp::parse_rfc3339(t);
    }
    match parse_duration_ns(t) {
        Ok(ns) => Ok(Timestamp::from_nanos(now.as_nanos().saturating_sub(ns))),
        Err(_) => Err(format!(
            "`{s}` is neither a time (RFC 3339, like 2026-12-03T06:30:00Z) nor a duration ago (like 90s, 2h, 3d, 1h30m)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_z() {
        let t = Timestamp::from_nanos(1_764_255_028_500_000_000);
        assert_eq!(t.to_rfc3339(), "2025-11-27T14:50:28.5Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2025-11-27T15:50:28.5+01:00").unwrap(),
            t
        );
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration_ns("2h").unwrap(), 7_200_000_000_000);
        assert_eq!(parse_duration_ns("250ms").unwrap(), 250_000_000);
        assert!(
            parse_duration_ns("2x")
                .unwrap_err()
                .contains("unknown duration unit")
        );
        assert!(parse_duration_ns("h").is_err());
        assert_eq!(parse_duration_ns("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration_ns("0").unwrap(), 0);
        assert!(parse_duration_ns("5").unwrap_err().contains("no unit"));
        assert!(parse_duration_ns("-5s").unwrap_err().contains("negative"));
        assert!(parse_duration_ns("").is_err());
    }

    #[test]
    fn parses_moments() {
        let now = Timestamp::parse_rfc3339("2026-12-03T10:00:00Z").unwrap();
        assert_eq!(
            parse_moment("2026-12-03T06:30:00Z", now).unwrap(),
            Timestamp::parse_rfc3339("2026-12-03T06:30:00Z").unwrap()
        );
        assert_eq!(
            parse_moment("2026-12-03T07:30:00+01:00", now).unwrap(),
            Timestamp::parse_rfc3339("2026-12-03T06:30:00Z").unwrap()
        );
        assert_eq!(
            parse_moment("3h30m", now).unwrap(),
            Timestamp::parse_rfc3339("2026-12-03T06:30:00Z").unwrap()
        );
        let err = parse_moment("yesterday", now).unwrap_err();
        assert!(
            err.contains("yesterday") && err.contains("RFC 3339"),
            "{err}"
        );
        assert!(parse_moment("2026-13-03T06:30:00Z", now).is_err());
        assert!(
            parse_moment("2999-01-01T00:00:00Z", now)
                .unwrap_err()
                .contains("out of range")
        );
    }
}
