//! The two forwarding paths: splice(2) while no toxic applies, userspace
//! while one does, and the switches between them in both directions while
//! bytes are moving.

use crate::support::*;
use serde_json::json;
use std::io::Write;
use std::time::Duration;

/// Reads a per-direction counter of proxy `p` from /metrics.
fn counter(f: &Fixture, name: &str, dir: &str, p: &str) -> u64 {
    let text = f.api.metrics().unwrap();
    let prefix = format!("{name}{{direction=\"{dir}\",proxy=\"{p}\"");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

fn zero_copy(f: &Fixture, dir: &str, p: &str) -> u64 {
    counter(f, "plumb_proxy_zero_copy_bytes_total", dir, p)
}

#[test]
fn connection_returns_to_zero_copy_after_its_last_toxic_is_removed() {
    let f = server();
    let addr = f.proxy("zc", echo_server());
    let mut s = connect(addr);
    round_trip(&mut s, &pattern(65536));
    assert_eq!(zero_copy(&f, "upstream", "zc"), 65536, "no toxic: spliced");

    f.toxic(
        "zc",
        json!({"type": "latency", "stream": "upstream", "attributes": {"latency": 50}}),
    );
    let took = round_trip(&mut s, &pattern(1000));
    assert!(
        took >= Duration::from_millis(45),
        "latency applied: {took:?}"
    );
    assert_eq!(
        zero_copy(&f, "upstream", "zc"),
        65536,
        "with a toxic the bytes go through userspace"
    );

    f.api.remove_toxic("zc", "latency_upstream").unwrap();
    let big = pattern(1 << 20);
    round_trip(&mut s, &big);
    let spliced = zero_copy(&f, "upstream", "zc") - 65536;
    // The few bytes that were already queued in the chain when the removal
    // arrived may still be copied; the rest must be spliced again.
    assert!(
        spliced >= (1 << 19),
        "only {spliced} of {} bytes spliced after the toxic was removed",
        big.len()
    );
    // Downstream never had a toxic: everything it sent was spliced.
    assert_eq!(
        zero_copy(&f, "downstream", "zc"),
        counter(&f, "toxiproxy_proxy_sent_bytes_total", "downstream", "zc")
    );
}

#[test]
fn bytes_survive_switching_paths_mid_stream() {
    let f = server();
    let addr = f.proxy("sw", echo_server());
    let mut s = connect(addr);
    let total = 24 << 20;
    let data = pattern(total);
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        // Small writes so the stream is still flowing while toxics change.
        for piece in sent.chunks(64 * 1024) {
            w.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    let mut got = Vec::with_capacity(total);
    let mut buf = vec![0u8; 65536];
    let mut switches = 0;
    let mut next_switch = 1 << 20;
    while got.len() < total {
        use std::io::Read;
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} of {total} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if got.len() >= next_switch && switches < 12 {
            // Alternate: toxics on both streams, then none.
            if switches % 2 == 0 {
                f.toxic("sw", json!({"type": "noop", "stream": "upstream"}));
                f.toxic(
                    "sw",
                    json!({"type": "slicer", "stream": "downstream",
                    "attributes": {"average_size": 1000, "size_variation": 100, "delay": 0}}),
                );
            } else {
                f.api.remove_toxic("sw", "noop_upstream").unwrap();
                f.api.remove_toxic("sw", "slicer_downstream").unwrap();
            }
            switches += 1;
            next_switch += 1 << 20;
        }
    }
    writer.join().unwrap();
    assert_eq!(switches, 12);
    assert!(
        got == data,
        "bytes changed or reordered across path switches"
    );
    // Both paths carried part of the stream.
    let spliced = zero_copy(&f, "downstream", "sw");
    let sent = counter(&f, "toxiproxy_proxy_sent_bytes_total", "downstream", "sw");
    assert_eq!(sent, total as u64);
    assert!(spliced > 0 && spliced < sent, "spliced {spliced} of {sent}");
}
