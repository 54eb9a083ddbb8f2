//! Exponential backoff with full jitter, the one schedule plumb waits by:
//! this client's retries, the shipper's passes, `plumb run --retries` and
//! alert deliveries.
//!
//! After the `n`th consecutive failure the waiter sleeps a uniformly random
//! time in `[0, min(cap, base * 2^n)]` ("full jitter", as in the AWS
//! architecture blog's analysis): a fleet whose collector comes back, or
//! whose jobs were all evicted at once, does not come back in lockstep. A
//! `Retry-After` from the server is a floor on top.

use std::time::Duration;

/// A bad `BASE..CAP` (`plumb run --backoff`).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BackoffError {
    /// Not `BASE..CAP`.
    #[error("backoff `{0}`: expected BASE..CAP, like 1s..5m")]
    Syntax(String),
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
}

impl std::str::FromStr for Backoff {
    type Err = BackoffError;
    /// `BASE..CAP`, each a duration with its unit (`1s..5m`).
    fn from_str(s: &str) -> Result<Self, BackoffError> {
        let (a, b) = s
            .split_once("..")
            .ok_or_else(|| BackoffError::Syntax(s.to_string()))?;
        let bound = |t: &str| {
            plumb_model::parse_duration_ns(t)
                .map(|ns| Duration::from_nanos(ns.max(0) as u64))
                .map_err(|why| BackoffError::BadDuration {
                    given: s.to_string(),
                    why,
                })
        };
        let (base, cap) = (bound(a)?, bound(b)?);
        if base > cap {
            return Err(BackoffError::Reversed(s.to_string()));
        }
        Ok(Backoff { base, cap })
    }
}

/// A backoff schedule; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The ceiling after `failures` consecutive failures (the first failure
    /// is 0): `min(cap, base * 2^failures)`, without overflow.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay for a uniform sample `u` in `[0, 1]`: `u * ceiling`, raised
    /// to `retry_after` when the server asked for that (capped at `cap` so a
    /// confused server cannot park clients for hours).
    pub fn delay(&self, failures: u32, u: f64, retry_after: Option<Duration>) -> Duration {
        let u = if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = self.ceiling(failures).mul_f64(u);
        match retry_after {
            Some(r) => jittered.max(r.min(self.cap)),
            None => jittered,
        }
    }

    /// [`Backoff::delay`] with a fresh random sample.
    pub fn next_delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        self.delay(failures, fastrand::f64(), retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_parses_base_and_cap() {
        let b: Backoff = "1s..5m".parse().unwrap();
        assert_eq!(b.base, Duration::from_secs(1));
        assert_eq!(b.cap, Duration::from_secs(300));
        assert!(matches!(
            "5m..1s".parse::<Backoff>(),
            Err(BackoffError::Reversed(_))
        ));
        assert!(matches!(
            "1s".parse::<Backoff>(),
            Err(BackoffError::Syntax(_))
        ));
        let e = "1x..2s".parse::<Backoff>().unwrap_err().to_string();
        assert!(e.contains("`1x..2s`"), "{e}");
    }

    #[test]
    fn ceilings_double_then_stop_at_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(1000), Duration::from_secs(1));
    }

    proptest! {
        #[test]
        fn delay_is_within_full_jitter_bounds(
            base_ms in 1u64..10_000,
            cap_ms in 1u64..600_000,
            failures in 0u32..200,
            u in 0.0f64..=1.0,
        ) {
            let b = Backoff { base: Duration::from_millis(base_ms), cap: Duration::from_millis(cap_ms) };
            let ceiling = Duration::from_millis(cap_ms.min(base_ms.saturating_mul(1u64 << failures.min(40))));
            let d = b.delay(failures, u, None);
            prop_assert!(d <= ceiling, "{d:?} > {ceiling:?}");
            prop_assert!(d <= b.cap);
        }

        #[test]
        fn ceilings_never_shrink(base_ms in 1u64..10_000, cap_ms in 1u64..600_000, n in 0u32..100) {
            let b = Backoff { base: Duration::from_millis(base_ms), cap: Duration::from_millis(cap_ms) };
            prop_assert!(b.ceiling(n + 1) >= b.ceiling(n));
        }

        #[test]
        fn retry_after_is_a_floor_up_to_the_cap(
            failures in 0u32..50,
            u in 0.0f64..=1.0,
            ra_ms in 0u64..100_000,
        ) {
            let b = Backoff::default();
            let ra = Duration::from_millis(ra_ms);
            let d = b.delay(failures, u, Some(ra));
            prop_assert!(d >= ra.min(b.cap));
            prop_assert!(d <= b.cap);
        }

        #[test]
        fn samples_spread_over_the_range(failures in 0u32..10) {
            // Full jitter: the low and high ends of the range are both reached.
            let b = Backoff::default();
            let c = b.ceiling(failures);
            prop_assert_eq!(b.delay(failures, 0.0, None), Duration::ZERO);
            prop_assert_eq!(b.delay(failures, 1.0, None), c);
        }
    }
}
