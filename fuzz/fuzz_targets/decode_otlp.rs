//! Feeds arbitrary bytes to the OTLP/HTTP decoders (logs, traces, metrics;
//! protobuf and JSON; gzip). The checks live in
//! `plumb_otlp::fuzzing::decode_otlp`, so the stable tests replay this
//! target's corpus (fuzz/corpus/decode_otlp) through the same function.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| plumb_otlp::fuzzing::decode_otlp(data));
