//! Feeds arbitrary bytes to the OTLP/HTTP decoders (logs, traces, metrics;
//! protobuf and JSON; gzip). A decoder may refuse input, always with a
//! message; it must never panic, and whatever it accepts must render as
//! stored lines and hash without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plumb_otlp::{DecodeError, Format};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Protobuf, Format::Json] {
        match plumb_otlp::decode_logs(data, format) {
            Ok(logs) => {
                let mut line = String::new();
                for b in &logs.batches {
                    let h = b.source.hash();
                    for r in &b.records {
                        line.clear();
                        r.write_line(&b.source, &mut line);
                        let _ = r.content_hash(h);
                        assert!(!line.contains('\n'), "one record, one line");
                    }
                }
            }
            Err(e) => check(e),
        }
        if let Err(e) = plumb_otlp::decode_traces(data, format) {
            check(e);
        }
        if let Err(e) = plumb_otlp::decode_metrics(data, format) {
            check(e);
        }
    }
    match plumb_otlp::decompress(data, Some("gzip"), 1 << 20) {
        Ok(plain) => {
            let _ = plumb_otlp::decode_logs(&plain, Format::Protobuf);
        }
        Err(e) => check(e),
    }
});

fn check(e: DecodeError) {
    assert!(!e.to_string().is_empty());
}
