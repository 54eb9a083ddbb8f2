//! One module per command group.

pub mod demo;
pub mod query;
pub mod run;
