//! Each standard toxic, observed on real connections through a live proxy.
//! Timing assertions are lower bounds with generous upper bounds: the test
//! machine is shared and loaded.

use crate::support::*;
use serde_json::json;
use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

#[test]
fn forwarding_is_exact_without_toxics() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    let mut s = connect(addr);
    let data = pattern(3 << 20);
    let writer = {
        let mut w = s.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || w.write_all(&data).unwrap())
    };
    let back = read_n(&mut s, data.len());
    writer.join().unwrap();
    assert!(back == data, "3 MiB echoed intact");
}

#[test]
fn latency_downstream_and_upstream() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    let mut s = connect(addr);
    let base = round_trip(&mut s, b"warm");
    // Added to the open connection: live changes reach it.
    f.toxic(
        "p",
        json!({"type": "latency", "attributes": {"latency": 100, "jitter": 10}}),
    );
    let d = round_trip(&mut s, b"ping");
    assert!(d >= Duration::from_millis(88), "downstream latency: {d:?}");
    assert!(
        d < Duration::from_millis(100) + base + Duration::from_secs(2),
        "{d:?}"
    );
    f.toxic(
        "p",
        json!({"type": "latency", "stream": "upstream", "attributes": {"latency": 100}}),
    );
    let d = round_trip(&mut s, b"ping");
    assert!(d >= Duration::from_millis(185), "both directions: {d:?}");
    // Removal takes effect on the same connection.
    f.api.remove_toxic("p", "latency_downstream").unwrap();
    f.api.remove_toxic("p", "latency_upstream").unwrap();
    let d = round_trip(&mut s, b"ping");
    assert!(d < Duration::from_millis(90), "after removal: {d:?}");
}

#[test]
fn latency_is_pipelined_not_cumulative() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic("p", latency(200));
    let mut s = connect(addr);
    let t = Instant::now();
    for i in 0..5u8 {
        s.write_all(&[i]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let back = read_n(&mut s, 5);
    assert_eq!(back, vec![0, 1, 2, 3, 4]);
    let d = t.elapsed();
    assert!(d >= Duration::from_millis(280), "{d:?}");
    assert!(
        d < Duration::from_millis(900),
        "5 chunks must not take 5 x 200 ms: {d:?}"
    );
}

#[test]
fn removing_latency_flushes_buffered_data() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic("p", latency(5000));
    let mut s = connect(addr);
    let t = Instant::now();
    s.write_all(b"stuck").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    f.api.remove_toxic("p", "latency_downstream").unwrap();
    assert_eq!(read_n(&mut s, 5), b"stuck");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn bandwidth_limits_rate() {
    let f = server();
    let addr = f.proxy("p", source_server(100_000));
    f.toxic(
        "p",
        json!({"type": "bandwidth", "attributes": {"rate": 200}}),
    );
    let mut s = connect(addr);
    let t = Instant::now();
    let (data, end) = read_to_end(&mut s);
    let d = t.elapsed();
    assert_eq!(end, Ok(()));
    assert!(data == pattern(100_000));
    // 100 KB at 200 KB/s: 500 ms, within 10% below.
    assert!(d >= Duration::from_millis(450), "{d:?}");
    assert!(d < Duration::from_millis(2000), "{d:?}");
}

#[test]
fn slow_close_delays_the_close() {
    let f = server();
    let addr = f.proxy("p", source_server(10));
    f.toxic(
        "p",
        json!({"type": "slow_close", "attributes": {"delay": 300}}),
    );
    let mut s = connect(addr);
    let t = Instant::now();
    let (data, end) = read_to_end(&mut s);
    assert_eq!(data, pattern(10));
    assert_eq!(end, Ok(()));
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn timeout_drops_data_then_closes() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic(
        "p",
        json!({"type": "timeout", "attributes": {"timeout": 300}}),
    );
    let mut s = connect(addr);
    let t = Instant::now();
    s.write_all(b"lost").unwrap();
    let (data, end) = read_to_end(&mut s);
    assert!(data.is_empty(), "data is dropped");
    assert!(end.is_ok() || end == Err(ErrorKind::ConnectionReset));
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn timeout_zero_holds_until_removed() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic(
        "p",
        json!({"type": "timeout", "attributes": {"timeout": 0}}),
    );
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    s.write_all(b"x").unwrap();
    let mut buf = [0u8; 1];
    let r = std::io::Read::read(&mut s, &mut buf);
    assert!(
        matches!(r, Err(ref e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut),
        "{r:?}"
    );
    // Removing a timeout toxic closes the connection, as in Toxiproxy.
    f.api.remove_toxic("p", "timeout_downstream").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (_, end) = read_to_end(&mut s);
    assert!(
        end.is_ok() || end == Err(ErrorKind::ConnectionReset),
        "{end:?}"
    );
}

#[test]
fn reset_peer_sends_rst() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic(
        "p",
        json!({"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 100}}),
    );
    let mut s = connect(addr);
    let t = Instant::now();
    s.write_all(b"hello").unwrap();
    let (_, end) = read_to_end(&mut s);
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    assert!(
        t.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn slicer_keeps_bytes_and_adds_delay() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic(
        "p",
        json!({"type": "slicer", "attributes": {"average_size": 10, "size_variation": 5, "delay": 2000}}),
    );
    let mut s = connect(addr);
    let msg = pattern(1000);
    let d = round_trip(&mut s, &msg);
    // About 100 slices, 2 ms apart.
    assert!(d >= Duration::from_millis(100), "{d:?}");
}

#[test]
fn limit_data_truncates_then_closes() {
    let f = server();
    let addr = f.proxy("p", source_server(10_000));
    f.toxic(
        "p",
        json!({"type": "limit_data", "attributes": {"bytes": 1234}}),
    );
    let (data, _) = read_to_end(&mut connect(addr));
    assert_eq!(data, pattern(1234));
    // Per connection: the next one gets its own allowance.
    let (data, _) = read_to_end(&mut connect(addr));
    assert_eq!(data.len(), 1234);
}

#[test]
fn toxicity_is_a_per_connection_probability() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic(
        "p",
        json!({"type": "latency", "toxicity": 0.0, "attributes": {"latency": 300}}),
    );
    let d = round_trip(&mut connect(addr), b"x");
    assert!(
        d < Duration::from_millis(250),
        "toxicity 0 never applies: {d:?}"
    );
    f.api
        .update_toxic("p", "latency_downstream", &json!({"toxicity": 0.5}))
        .unwrap();
    let mut hit = 0;
    f.api
        .update_toxic(
            "p",
            "latency_downstream",
            &json!({"attributes": {"latency": 150}}),
        )
        .unwrap();
    for _ in 0..16 {
        let mut s = connect(addr);
        let d1 = round_trip(&mut s, b"a");
        let d2 = round_trip(&mut s, b"b");
        // The roll is per connection: both round trips agree.
        let slow = Duration::from_millis(140);
        assert_eq!(d1 >= slow, d2 >= slow, "{d1:?} {d2:?}");
        if d1 >= slow {
            hit += 1;
        }
    }
    assert!(
        (1..16).contains(&hit),
        "about half of 16 connections slowed, got {hit}"
    );
}

#[test]
fn noop_passes_through() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic("p", json!({"type": "noop"}));
    f.toxic("p", json!({"type": "noop", "stream": "upstream"}));
    let mut s = connect(addr);
    let msg = pattern(200_000);
    let mut w = s.try_clone().unwrap();
    let m2 = msg.clone();
    let t = std::thread::spawn(move || w.write_all(&m2).unwrap());
    assert!(read_n(&mut s, msg.len()) == msg);
    t.join().unwrap();
}

// Composition: as in Toxiproxy, the toxics of one stream form a chain in
// creation order and each acts on what the one before it let through.

#[test]
fn two_latency_toxics_on_one_stream_add_up() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic(
        "p",
        json!({"name": "first", "type": "latency", "attributes": {"latency": 100}}),
    );
    f.toxic(
        "p",
        json!({"name": "second", "type": "latency", "attributes": {"latency": 100}}),
    );
    let mut s = connect(addr);
    let d = round_trip(&mut s, b"ping");
    assert!(d >= Duration::from_millis(200), "100 ms + 100 ms: {d:?}");
    // Still pipelined: five chunks 20 ms apart do not take 5 x 200 ms.
    let t = Instant::now();
    for i in 0..5u8 {
        s.write_all(&[i]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_n(&mut s, 5), vec![0, 1, 2, 3, 4]);
    let d = t.elapsed();
    assert!(d >= Duration::from_millis(280), "{d:?}");
    assert!(d < Duration::from_millis(1000), "{d:?}");
}

#[test]
fn two_bandwidth_toxics_the_slower_wins_in_either_order() {
    for (a, b) in [(400, 100), (100, 400)] {
        let f = server();
        let addr = f.proxy("p", source_server(100_000));
        for (name, rate) in [("a", a), ("b", b)] {
            f.toxic(
                "p",
                json!({"name": name, "type": "bandwidth", "attributes": {"rate": rate}}),
            );
        }
        let mut s = connect(addr);
        let t = Instant::now();
        let (data, end) = read_to_end(&mut s);
        let d = t.elapsed();
        assert_eq!(end, Ok(()));
        assert!(data == pattern(100_000));
        // 100 KB at 100 KB/s: a second.
        assert!(d >= Duration::from_millis(900), "{a} then {b} KB/s: {d:?}");
        assert!(d < Duration::from_secs(5), "{a} then {b} KB/s: {d:?}");
    }
}

#[test]
fn latency_then_slicer_delays_add_up() {
    let f = server();
    let addr = f.proxy("p", echo_server());
    f.toxic("p", latency(150));
    f.toxic(
        "p",
        json!({"type": "slicer", "attributes": {"average_size": 10, "delay": 2000}}),
    );
    let mut s = connect(addr);
    let msg = pattern(1000);
    let d = round_trip(&mut s, &msg);
    // 150 ms of latency, then 100 slices 2 ms apart.
    assert!(d >= Duration::from_millis(150 + 190), "{d:?}");
}

#[test]
fn limit_data_then_slow_close_delays_the_close_it_makes() {
    let f = server();
    let addr = f.proxy("p", source_server(10_000));
    f.toxic(
        "p",
        json!({"type": "limit_data", "attributes": {"bytes": 1234}}),
    );
    f.toxic(
        "p",
        json!({"type": "slow_close", "attributes": {"delay": 300}}),
    );
    let t = Instant::now();
    let (data, _) = read_to_end(&mut connect(addr));
    assert_eq!(data, pattern(1234));
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "the close limit_data makes passes slow_close: {:?}",
        t.elapsed()
    );
}

#[test]
fn two_limit_data_toxics_the_smaller_wins() {
    let f = server();
    let addr = f.proxy("p", source_server(10_000));
    for (name, bytes) in [("big", 5000), ("small", 1234)] {
        f.toxic(
            "p",
            json!({"name": name, "type": "limit_data", "attributes": {"bytes": bytes}}),
        );
    }
    let (data, _) = read_to_end(&mut connect(addr));
    assert_eq!(data, pattern(1234));
}
