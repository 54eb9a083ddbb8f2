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
        Ok(Timestamp(ts.as_nanosecond() as i64))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Parses a human duration such as `90s`, `15m`, `2h`, `3d`, `1w`, `250ms`
/// into nanoseconds.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("`{s}` is not a duration: expected a number then a unit, like 90s, 15m, 2h")
    })?;
    let scale: f64 = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" | "" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "d" => 86400e9,
        "w" => 7.0 * 86400e9,
        other => {
            return Err(format!(
                "`{s}`: unknown duration unit `{other}` (use ms, s, m, h, d or w)"
            ));
        }
    };
    let ns = value * scale;
    if !ns.is_finite() || ns > i64::MAX as f64 {
        return Err(format!("`{s}` is too long a duration"));
    }
    Ok(ns as i64)
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
    }
}
