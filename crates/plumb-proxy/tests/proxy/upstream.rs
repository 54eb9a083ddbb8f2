//! Upstream servers on 127.0.0.1 for proxy tests. Shared by plumb-proxy's
//! tests and the `plumb proxy` tests of the binary (its tests/support
//! includes this file), so both echo the same way.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};

/// Listens on a free loopback port and runs `serve` on a thread of its own
/// for each connection, until the test process ends.
fn each_connection(serve: fn(TcpStream, usize), arg: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || serve(s, arg));
        }
    });
    addr
}

/// A TCP echo server: every byte read is written back; EOF is answered with
/// EOF after the echo, so half-close can be observed.
pub fn echo_server() -> SocketAddr {
    each_connection(
        |mut s, _| {
            let mut buf = [0u8; 16384];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = s.shutdown(Shutdown::Write);
                        return;
                    }
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        },
        0,
    )
}

/// A server that sends `n` bytes (a repeating pattern) to each connection,
/// then closes.
pub fn source_server(n: usize) -> SocketAddr {
    each_connection(
        |mut s, n| {
            let _ = s.write_all(&pattern(n));
        },
        n,
    )
}

pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
