/*!
Runs a program exactly as if it had been run directly, and records it.

[`record`] spawns the child (on pipes, or on pseudo-terminals where plumb's own
stdout/stderr are terminals), forwards signals, copies its output through
unchanged while handing every read to a [`Sink`], and on exit returns the
finished [`plumb_model::Run`] with exit status, exception, rusage and
fingerprint. It does not know where records go: that is the sink's business.

[`record_supervised`] adds eviction handling ([`evict`]: a warning signal,
a grace period, then SIGKILL; [`cloud`]: spot and preemption notices from
instance metadata) and the attempt's place among retries ([`retry`]: which
outcomes are tried again, full-jitter backoff).
*/
#![deny(missing_docs)]

mod capture;
pub mod cloud;
pub mod evict;
pub mod files;
pub mod fingerprint;
pub mod host;
pub mod lock;
pub mod name;
pub mod oom;
pub mod postmortem;
pub mod preflight;
mod pty;
pub mod redact;
pub mod retry;
mod signals;
pub mod supervise;
pub mod throttle;
pub mod timeout;
mod tree;

pub use redact::Redactor;
pub use signals::signal_name;
pub use supervise::{RecordError, RunOptions, Sink, Supervision, record, record_supervised};
