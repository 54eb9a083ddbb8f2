//! One module per command group.

pub mod agent;
pub mod alerts;
pub mod checkpoint;
pub mod dashboard;
pub mod demo;
pub mod errors;
pub mod evict_demo;
pub mod nodes;
pub mod otlp;
pub mod proxy;
pub mod query;
pub mod run;
pub mod serve;
pub mod slow;
pub mod token;
