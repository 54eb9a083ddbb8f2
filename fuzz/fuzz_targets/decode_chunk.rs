//! Decodes arbitrary bytes as a stored output chunk. The checks live in
//! `plumb_store::chunk::fuzz_decode_chunk`, so the stable tests replay
//! fuzz/corpus/decode_chunk through them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| plumb_store::chunk::fuzz_decode_chunk(data));
