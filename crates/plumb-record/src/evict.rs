//! Eviction: a warning passed on to the program, a grace period, then
//! SIGKILL.
//!
//! Schedulers and clouds stop a job the same way: a warning (SIGTERM from
//! Kubernetes, Slurm or HTCondor; an interruption notice in the cloud's
//! instance metadata), some time to save, then a kill. With eviction
//! handling on, the recorder turns either kind of warning into the signal
//! the program expects ([`EvictOptions::signal`]), waits up to
//! [`EvictOptions::grace`] for it to exit, and then SIGKILLs it (its whole
//! process group when it made one of its own). The run is recorded as
//! [`plumb_model::RunState::Evicted`] with a [`plumb_model::Eviction`]
//! holding the timings.

use crate::cloud::CloudWatch;
use std::time::Duration;

/// How the recorder handles eviction warnings.
#[derive(Debug, Clone)]
pub struct EvictOptions {
    /// The signal sent to the program as the warning.
    pub signal: libc::c_int,
    /// How long the program may take to exit after the warning.
    pub grace: Duration,
    /// Whether SIGTERM sent to the recorder is an eviction warning. When
    /// false SIGTERM is forwarded unchanged, as without eviction handling.
    pub on_sigterm: bool,
    /// An instance-metadata service to poll for interruption notices.
    pub cloud: Option<CloudWatch>,
}

impl Default for EvictOptions {
    fn default() -> Self {
        EvictOptions {
            signal: libc::SIGTERM,
            grace: DEFAULT_GRACE,
            on_sigterm: true,
            cloud: None,
        }
    }
}

/// The grace period when none is given: Kubernetes' default
/// `terminationGracePeriodSeconds` and Slurm's default `KillWait`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// A signal name or number that is not one.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown signal `{0}`: use a name such as SIGTERM, TERM, SIGUSR1, SIGINT, SIGQUIT, SIGHUP, or a number from 1 to 64"
)]
pub struct UnknownSignal(pub String);

/// Parses `SIGTERM`, `TERM`, `term`, `15` or `SIGRTMIN+2` into a signal
/// number. SIGKILL and SIGSTOP are refused: they cannot be a warning, the
/// program cannot act on them.
pub fn parse_signal(s: &str) -> Result<libc::c_int, UnknownSignal> {
    let t = s.trim();
    if let Ok(n) = t.parse::<libc::c_int>() {
        if (1..=libc::SIGRTMAX()).contains(&n) && n != libc::SIGKILL && n != libc::SIGSTOP {
            return Ok(n);
        }
        return Err(UnknownSignal(s.to_string()));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    (1..=libc::SIGRTMAX())
        .filter(|&n| n != libc::SIGKILL && n != libc::SIGSTOP)
        .find(|&n| crate::signals::signal_name(n).as_deref() == Some(name.as_str()))
        .ok_or_else(|| UnknownSignal(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_numbers_and_case_are_accepted() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("usr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("INT").unwrap(), libc::SIGINT);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert_eq!(parse_signal("SIGRTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
    }

    #[test]
    fn unknown_and_unusable_signals_are_refused_by_name() {
        for bad in ["SIGFOO", "", "0", "65", "-1", "KILL", "SIGSTOP", "9"] {
            let e = parse_signal(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
    }
}
