//! Test fixtures: upstream servers on 127.0.0.1 and a running proxy server.

use plumb_proxy::{Client, ServerHandle};
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[path = "upstream.rs"]
mod upstream;
pub use upstream::*;

pub struct Fixture {
    pub server: ServerHandle,
    pub api: Client,
}

pub fn server() -> Fixture {
    let server = plumb_proxy::spawn("127.0.0.1:0").unwrap();
    let api = server.client();
    Fixture { server, api }
}

impl Fixture {
    /// Creates a proxy to `upstream` on a free port; returns its address.
    pub fn proxy(&self, name: &str, upstream: SocketAddr) -> SocketAddr {
        let p = self
            .api
            .create_proxy(name, "127.0.0.1:0", &upstream.to_string())
            .unwrap();
        p["listen"].as_str().unwrap().parse().unwrap()
    }
    pub fn toxic(&self, proxy: &str, body: Value) -> Value {
        self.api.add_toxic(proxy, &body).unwrap()
    }
    pub fn admin(&self) -> String {
        self.server.admin_addr().to_string()
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `n` bytes or panics after the socket's read timeout.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// Sends `msg` and times until the echo is back in full.
pub fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Duration {
    let t = Instant::now();
    s.write_all(msg).unwrap();
    let back = read_n(s, msg.len());
    assert_eq!(back, msg);
    t.elapsed()
}

/// Reads until EOF or error; returns the bytes and how it ended.
pub fn read_to_end(s: &mut TcpStream) -> (Vec<u8>, Result<(), ErrorKind>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(e.kind())),
        }
    }
}

pub fn latency(ms: i64) -> Value {
    json!({"type": "latency", "attributes": {"latency": ms}})
}

/// A keep-alive HTTP/1.1 server answering every request with 200 and a body
/// of `body_len` bytes; counts requests seen.
pub fn http_server(
    body_len: usize,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..p + 4);
                        count.fetch_add(1, Ordering::SeqCst);
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n");
                        let mut resp = head.into_bytes();
                        resp.extend(pattern(body_len));
                        if s.write_all(&resp).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Sends a GET on `s` and reads one response; returns status and body.
pub fn http_get(s: &mut TcpStream) -> (u16, Vec<u8>) {
    s.write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..p]).to_string();
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while got.len() < p + 4 + len {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "closed mid-body");
                got.extend_from_slice(&buf[..n]);
            }
            return (status, got[p + 4..p + 4 + len].to_vec());
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a response");
        got.extend_from_slice(&buf[..n]);
    }
}
