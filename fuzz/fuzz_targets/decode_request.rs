//! Feeds arbitrary bytes to every admin API request decoder. The checks
//! live in `plumb_proxy::model::fuzz_decode_request`, so the stable tests
//! replay this target's corpus (fuzz/corpus/decode_request) through the
//! same function.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| plumb_proxy::model::fuzz_decode_request(data));
