//! One module per command group.

pub mod checkpoint;
pub mod demo;
pub mod proxy;
pub mod query;
pub mod run;
pub mod serve;
