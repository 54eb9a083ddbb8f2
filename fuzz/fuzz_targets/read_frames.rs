//! Reads arbitrary bytes as spool frames (what the store imports and the
//! shipper sends). The checks live in `plumb_model::frame::fuzz_read_frames`,
//! so the stable tests replay fuzz/corpus/read_frames through them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| plumb_model::frame::fuzz_read_frames(data));
