//! Running a command again after a failure or an eviction: which outcomes
//! count, and how long to wait in between.
//!
//! The wait is "full jitter" exponential backoff: before retry number `n`
//! (0 for the first retry) the recorder sleeps a time drawn uniformly from
//! `[0, min(cap, base * 2^n)]`. Spreading the restarts out this way keeps a
//! fleet whose jobs were all evicted at once from coming back at once.

use plumb_model::{Run, RunState, parse_duration_ns};
use std::collections::BTreeSet;
use std::time::Duration;

/// Exponential backoff bounds, `--backoff BASE..CAP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's upper bound.
    pub base: Duration,
    /// No wait is ever longer.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

/// A bad `--backoff` or `--retry-on`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetryError {
    /// Not `BASE..CAP`.
    #[error("backoff `{0}`: expected BASE..CAP, like 1s..5m")]
    BackoffSyntax(String),
    /// A bound that is not a duration.
    #[error("backoff `{given}`: {why}")]
    BadDuration {
        /// The whole value.
        given: String,
        /// What is wrong with the bound.
        why: String,
    },
    /// The bounds are the wrong way round.
    #[error("backoff `{0}`: the first bound (the base) must not exceed the second (the cap)")]
    Reversed(String),
    /// An outcome name or code that is not one.
    #[error(
        "retry-on `{0}`: expected exit codes from 1 to 255 and the words failure, killed or evicted, separated by commas"
    )]
    BadOutcome(String),
}

impl std::str::FromStr for Backoff {
    type Err = RetryError;
    fn from_str(s: &str) -> Result<Self, RetryError> {
        let (a, b) = s
            .split_once("..")
            .ok_or_else(|| RetryError::BackoffSyntax(s.to_string()))?;
        let bound = |t: &str| {
            parse_duration_ns(t)
                .map(|ns| Duration::from_nanos(ns.max(0) as u64))
                .map_err(|why| RetryError::BadDuration {
                    given: s.to_string(),
                    why,
                })
        };
        let (base, cap) = (bound(a)?, bound(b)?);
        if base > cap {
            return Err(RetryError::Reversed(s.to_string()));
        }
        Ok(Backoff { base, cap })
    }
}

impl Backoff {
    /// The wait before retry number `retry` (0 for the first), given a
    /// uniform random number `unit` in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Which outcomes of an attempt make the recorder try again
/// (`--retry-on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOn {
    /// Any run that did not succeed.
    pub any_failure: bool,
    /// Runs evicted.
    pub evicted: bool,
    /// Runs killed by a signal.
    pub killed: bool,
    /// Runs that exited with one of these codes.
    pub codes: BTreeSet<i32>,
}

impl Default for RetryOn {
    /// Any failure, and eviction.
    fn default() -> Self {
        RetryOn {
            any_failure: true,
            evicted: true,
            killed: false,
            codes: BTreeSet::new(),
        }
    }
}

impl std::str::FromStr for RetryOn {
    type Err = RetryError;
    fn from_str(s: &str) -> Result<Self, RetryError> {
        let mut on = RetryOn {
            any_failure: false,
            evicted: false,
            killed: false,
            codes: BTreeSet::new(),
        };
        for word in s.split(',').map(str::trim) {
            match word.to_ascii_lowercase().as_str() {
                "failure" | "failed" | "any" => on.any_failure = true,
                "evicted" | "eviction" => on.evicted = true,
                "killed" | "signal" => on.killed = true,
                w => match w.parse::<i32>() {
                    Ok(code) if (1..=255).contains(&code) => {
                        on.codes.insert(code);
                    }
                    _ => return Err(RetryError::BadOutcome(word.to_string())),
                },
            }
        }
        Ok(on)
    }
}

impl RetryOn {
    /// Whether this finished attempt should be tried again.
    pub fn matches(&self, run: &Run) -> bool {
        let code = run.exit.as_ref().and_then(|e| e.code);
        match run.state {
            RunState::Succeeded | RunState::Running => false,
            RunState::Evicted if self.evicted => true,
            RunState::Killed if self.killed => true,
            state => {
                (self.any_failure && state.is_failure())
                    || code.is_some_and(|c| self.codes.contains(&c))
            }
        }
    }
}

/// Whether an attempt ended because the user interrupted it (Ctrl-C: the
/// program died of SIGINT or exited with 130, as shells report it). Such
/// an attempt is never retried: the user asked for the job to stop.
pub fn interrupted(run: &Run) -> bool {
    run.exit
        .as_ref()
        .is_some_and(|e| e.signal == Some(libc::SIGINT) || e.code == Some(130))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_model::{ExitStatus, Timestamp};
    use proptest::prelude::*;

    fn ended(state: RunState, code: Option<i32>, signal: Option<i32>) -> Run {
        let mut r = Run::new(plumb_model::new_id(), "x".into(), Timestamp::from_nanos(0));
        r.state = state;
        r.exit = Some(ExitStatus {
            code,
            signal,
            ..Default::default()
        });
        r
    }

    #[test]
    fn backoff_parses_and_refuses_reversed_bounds() {
        let b: Backoff = "1s..5m".parse().unwrap();
        assert_eq!(b.base, Duration::from_secs(1));
        assert_eq!(b.cap, Duration::from_secs(300));
        assert_eq!(
            "5m..1s".parse::<Backoff>(),
            Err(RetryError::Reversed("5m..1s".into()))
        );
        assert!(matches!(
            "1s".parse::<Backoff>(),
            Err(RetryError::BackoffSyntax(_))
        ));
        let e = "1x..2s".parse::<Backoff>().unwrap_err().to_string();
        assert!(e.contains("`1x..2s`") && e.contains("unit"), "{e}");
    }

    #[test]
    fn default_retries_failures_and_evictions_not_successes() {
        let on = RetryOn::default();
        assert!(on.matches(&ended(RunState::Failed, Some(1), None)));
        assert!(on.matches(&ended(RunState::Evicted, Some(75), None)));
        assert!(on.matches(&ended(RunState::Killed, None, Some(9))));
        assert!(!on.matches(&ended(RunState::Succeeded, Some(0), None)));
    }

    #[test]
    fn codes_and_words_select_outcomes() {
        let on: RetryOn = "75, evicted".parse().unwrap();
        assert!(on.matches(&ended(RunState::Failed, Some(75), None)));
        assert!(!on.matches(&ended(RunState::Failed, Some(1), None)));
        assert!(on.matches(&ended(RunState::Evicted, Some(1), None)));
        assert!(!on.matches(&ended(RunState::Killed, None, Some(9))));
        let on: RetryOn = "killed".parse().unwrap();
        assert!(on.matches(&ended(RunState::Killed, None, Some(9))));
        assert!(interrupted(&ended(
            RunState::Killed,
            None,
            Some(libc::SIGINT)
        )));
        assert!(!interrupted(&ended(RunState::Failed, Some(75), None)));
        for bad in ["0", "256", "oops", ""] {
            let e = bad.parse::<RetryOn>().unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    proptest! {
        #[test]
        fn delays_stay_within_the_full_jitter_bounds(
            base_ms in 0u64..10_000,
            extra_ms in 0u64..1_000_000,
            retry in 0u32..100,
            unit in 0.0f64..1.0,
        ) {
            let b = Backoff {
                base: Duration::from_millis(base_ms),
                cap: Duration::from_millis(base_ms + extra_ms),
            };
            let d = b.delay(retry, unit);
            let ceiling = (base_ms as u128 * (1u128 << retry.min(100))).min((base_ms + extra_ms) as u128);
            prop_assert!(d.as_millis() <= ceiling);
            prop_assert!(d <= b.cap);
            // The whole range is used: the top draw reaches (nearly) the ceiling.
            let top = b.delay(retry, 0.999_999);
            prop_assert!(top.as_millis() + 1 >= ceiling * 999 / 1000);
        }
    }
}
