//! A client made with `env_proxy: false` connects directly even when the
//! environment names a proxy: the metadata service and the proxy admin API
//! are only reachable that way. Its own test binary, since it sets
//! `HTTP_PROXY` for the whole process.

use plumb_http::{Client, Config};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_direct_client_ignores_the_proxy_environment() {
    // SAFETY: this binary holds this one test, so no other thread reads or
    // writes the environment meanwhile.
    unsafe {
        std::env::set_var("HTTP_PROXY", format!("http://127.0.0.1:{}", free_port()));
        std::env::set_var("ALL_PROXY", format!("http://127.0.0.1:{}", free_port()));
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        // A GET head ends with an empty line; bounded by the head's size.
        for _ in 0..100 {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ndirect")
            .unwrap();
    });
    let direct = Client::new(&Config {
        env_proxy: false,
        ..Config::new(&base)
    })
    .unwrap();
    assert_eq!(direct.get("/x").send().unwrap().text(), "direct");
    server.join().unwrap();
    // The same request through the environment's (dead) proxy fails.
    let proxied = Client::new(&Config::new(&base)).unwrap();
    assert!(proxied.get("/x").send().is_err());
}
