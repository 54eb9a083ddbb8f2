//! UDP proxies: forwarding, and the datagram toxics.

use crate::support::*;
use serde_json::json;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn udp_echo() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], peer);
        }
    });
    addr
}

fn udp_proxy(f: &Fixture, name: &str) -> SocketAddr {
    let p = f
        .api
        .call(
            "POST",
            "/proxies",
            Some(&json!({"name": name, "listen": "127.0.0.1:0", "upstream": udp_echo().to_string(), "protocol": "udp"})),
        )
        .unwrap();
    assert_eq!(p["protocol"], "udp");
    p["listen"].as_str().unwrap().parse().unwrap()
}

fn client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c
}

/// Every datagram received until a 300 ms silence.
fn drain(c: &UdpSocket) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..10_000 {
        match c.recv(&mut buf) {
            Ok(n) => out.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn udp_forwarding_and_latency() {
    let f = server();
    let addr = udp_proxy(&f, "u");
    let c = client();
    c.send_to(b"hello", addr).unwrap();
    assert_eq!(drain(&c), vec![b"hello".to_vec()]);
    f.toxic("u", latency(150));
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let t = Instant::now();
    c.send_to(b"slow", addr).unwrap();
    let mut buf = [0u8; 16];
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"slow");
    assert!(
        t.elapsed() >= Duration::from_millis(140),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn udp_loss_duplicate_reorder() {
    let f = server();
    let addr = udp_proxy(&f, "u");
    let c = client();
    f.toxic(
        "u",
        json!({"type": "loss", "stream": "upstream", "attributes": {"per_mille": 1000}}),
    );
    c.send_to(b"gone", addr).unwrap();
    assert!(drain(&c).is_empty(), "all lost");
    f.api.remove_toxic("u", "loss_upstream").unwrap();

    f.toxic(
        "u",
        json!({"type": "duplicate", "attributes": {"per_mille": 1000}}),
    );
    c.send_to(b"twice", addr).unwrap();
    assert_eq!(drain(&c), vec![b"twice".to_vec(), b"twice".to_vec()]);
    f.api.remove_toxic("u", "duplicate_downstream").unwrap();

    f.toxic(
        "u",
        json!({"type": "reorder", "attributes": {"per_mille": 500, "delay": 50}}),
    );
    for i in 0..30u8 {
        c.send_to(&[i], addr).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let got: Vec<u8> = drain(&c).into_iter().map(|d| d[0]).collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, (0..30).collect::<Vec<_>>(), "nothing lost");
    assert_ne!(got, sorted, "some datagrams overtaken");
}

#[test]
fn udp_only_toxics_are_refused_on_tcp_and_vice_versa() {
    let f = server();
    f.proxy("t", echo_server());
    let r = f
        .api
        .raw("POST", "/proxies/t/toxics", Some(br#"{"type":"loss"}"#))
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("does not apply to tcp proxies"));
    udp_proxy(&f, "u");
    let r = f
        .api
        .raw(
            "POST",
            "/proxies/u/toxics",
            Some(br#"{"type":"bandwidth","attributes":{"rate":1}}"#),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("does not apply to udp proxies"));
    let r = f
        .api
        .raw(
            "POST",
            "/proxies",
            Some(br#"{"name":"x","upstream":"127.0.0.1:1","protocol":"sctp"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 400);
}
