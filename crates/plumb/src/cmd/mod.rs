//! One module per command group.

pub mod agent;
pub mod alerts;
pub mod bench_node;
pub mod chaos;
pub mod checkpoint;
pub mod clock;
pub mod dashboard;
pub mod demo;
pub mod env;
pub mod env_demo;
pub mod errors;
pub mod every;
pub mod evict_demo;
pub mod integrity;
pub mod nodes;
pub mod otlp;
pub mod preflight;
pub mod proxy;
// `ls` and `show` escape what they print themselves (escape_cell,
// escape_controls); `logs` writes a run's output as the program wrote it.
pub mod profile;
#[allow(clippy::disallowed_methods)]
pub mod query;
pub mod rerun;
pub mod run;
pub mod serve;
pub mod slow;
pub mod stack;
pub mod store;
pub mod throttles;
pub mod timeline;
pub mod token;
pub mod watch;
