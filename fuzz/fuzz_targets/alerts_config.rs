//! Parses arbitrary text as the `[alerts]` configuration. The checks live
//! in `plumb_collector::alerts::config::fuzz_alerts_config`, so the stable
//! tests replay fuzz/corpus/alerts_config through them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| plumb_collector::alerts::config::fuzz_alerts_config(data));
