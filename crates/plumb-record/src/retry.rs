//! Running a command again after a failure or an eviction: which outcomes
//! count ([`RetryOn`]), and how long to wait in between ([`Backoff`]).
//!
//! The wait is the one backoff schedule plumb uses everywhere
//! ([`plumb_http::Backoff`], `--backoff BASE..CAP`): before retry number
//! `n` (0 for the first retry) the recorder sleeps a time drawn uniformly
//! from `[0, min(cap, base * 2^n)]`. Spreading the restarts out this way
//! keeps a fleet whose jobs were all evicted at once from coming back at
//! once.

pub use plumb_http::Backoff;
use plumb_model::{Run, RunState};
use std::collections::BTreeSet;

/// A bad `--retry-on`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetryError {
    /// An outcome name or code that is not one.
    #[error(
        "retry-on `{0}`: expected exit codes from 1 to 255 and the words failure, killed or evicted, separated by commas"
    )]
    BadOutcome(String),
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
}
