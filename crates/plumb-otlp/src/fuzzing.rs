//! The body of the fuzz target `decode_otlp` (in `fuzz/`), as a plain
//! function: cargo-fuzz runs it on a nightly toolchain, and the stable test
//! suite replays its checked-in corpus (`fuzz/corpus/decode_otlp`, the
//! inputs that once failed and a few seeds) through it, so a fixed crash
//! stays fixed without cargo-fuzz.

use crate::{DecodeError, Format, Limits};

/// A small budget, so the fuzzer reaches its edges with small inputs.
const SMALL: Limits = Limits {
    max_items: 64,
    max_depth: 8,
    max_decoded_bytes: 64 << 10,
};

/// Feeds `data` to every decoder (logs, traces, metrics; protobuf and
/// JSON; gzip). Panics when a decoder panics, refuses without a message,
/// renders a record on more than one line, or accepts within [`SMALL`]
/// a request holding more records or spans than its message budget.
pub fn decode_otlp(data: &[u8]) {
    for format in [Format::Protobuf, Format::Json] {
        match crate::decode_logs(data, format) {
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
        if let Err(e) = crate::decode_traces(data, format) {
            check(e);
        }
        if let Err(e) = crate::decode_metrics(data, format) {
            check(e);
        }
        // Every record and span is a message: what the scan lets through
        // within the small budget holds at most `max_items` of them.
        match crate::decode_logs_within(data, format, &SMALL) {
            Ok(logs) => {
                let n: u64 = logs.batches.iter().map(|b| b.records.len() as u64).sum();
                assert!(
                    n + logs.rejected <= SMALL.max_items,
                    "{n} records passed a budget of {} messages",
                    SMALL.max_items
                );
            }
            Err(e) => check(e),
        }
        match crate::decode_traces_within(data, format, &SMALL) {
            Ok(t) => assert!(
                t.spans.len() as u64 + t.rejected <= SMALL.max_items,
                "{} spans passed a budget of {} messages",
                t.spans.len(),
                SMALL.max_items
            ),
            Err(e) => check(e),
        }
    }
    match crate::decompress(data, Some("gzip"), 1 << 20) {
        Ok(plain) => {
            let _ = crate::decode_logs(&plain, Format::Protobuf);
        }
        Err(e) => check(e),
    }
}

fn check(e: DecodeError) {
    assert!(!e.to_string().is_empty());
}
